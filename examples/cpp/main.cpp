// dacovid_infer - classify chest X-rays with a dacovid-export TensorRT engine (TensorRT 10.x / 11.x).
//
//   dacovid_infer MODEL.engine IMAGE [IMAGE ...]
//
// Reads MODEL.engine and its sidecar MODEL.engine.json, refuses an engine built
// for another TensorRT version or GPU architecture (printing the command that
// rebuilds it), preprocesses each image as the sidecar says (preprocess.hpp),
// runs batches of up to the profile's maximum with setInputShape +
// setTensorAddress + enqueueV3 on one CUDA stream, and prints the softmax
// probability of every class.
#include <NvInfer.h>
#include <NvInferVersion.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "json_lite.hpp"
#include "preprocess.hpp"

static_assert(NV_TENSORRT_MAJOR >= 10, "this example needs TensorRT 10 or newer (enqueueV3, name-based I/O)");

namespace {

class Logger : public nvinfer1::ILogger {
public:
    void log(Severity severity, const char* msg) noexcept override {
        if (severity <= Severity::kWARNING) std::cerr << "[TensorRT] " << msg << "\n";
    }
};

void cuda_check(cudaError_t status, const char* what) {
    if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

struct CudaFree {
    void operator()(void* p) const noexcept { cudaFree(p); }
};
using DeviceBuffer = std::unique_ptr<void, CudaFree>;

DeviceBuffer device_alloc(std::size_t bytes) {
    void* p = nullptr;
    cuda_check(cudaMalloc(&p, bytes), "cudaMalloc");
    return DeviceBuffer(p);
}

class Stream {
public:
    Stream() { cuda_check(cudaStreamCreate(&stream_), "cudaStreamCreate"); }
    ~Stream() { cudaStreamDestroy(stream_); }
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
    cudaStream_t get() const { return stream_; }

private:
    cudaStream_t stream_ = nullptr;
};

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open '" + path + "'");
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::vector<int> version_parts(const std::string& text) {
    std::vector<int> parts;
    std::stringstream ss(text);
    std::string piece;
    while (std::getline(ss, piece, '.')) {
        std::size_t digits = 0;
        while (digits < piece.size() && std::isdigit(static_cast<unsigned char>(piece[digits]))) ++digits;
        if (digits == 0) break;
        parts.push_back(std::stoi(piece.substr(0, digits)));
    }
    return parts;
}

std::string join_shape(const nvinfer1::Dims& d) {
    std::string s;
    for (int i = 0; i < d.nbDims; ++i) s += (i ? "x" : "") + std::to_string(d.d[i]);
    return s;
}

struct Sidecar {
    std::string tensorrt_version;
    int cc_major = 0, cc_minor = 0;
    std::string gpu_name;
    bool hardware_compatible = false;
    std::string precision, input_name, output_name, onnx_file;
    long long engine_bytes = 0;
    int min_batch = 1, opt_batch = 1, max_batch = 1;
    std::vector<std::string> class_names;
    dacovid::Preprocessing preprocessing;
};

Sidecar read_sidecar(const std::string& path) {
    const jsonlite::Value v = jsonlite::parse(read_file(path));
    if (v["format"].str() != "dacovid-engine") throw std::runtime_error("'" + path + "' is not a dacovid-export engine sidecar");
    const jsonlite::Value* runtime = v.find("runtime");
    if (runtime != nullptr && runtime->str() == "tensorrt-rtx") {
        // this client links TensorRT (nvinfer), which cannot load a TensorRT-RTX engine
        throw std::runtime_error("'" + path + "' describes a TensorRT-RTX engine; this example links TensorRT: build a "
                                 "TensorRT engine with 'dacovid-export trt ... --runtime tensorrt'");
    }
    Sidecar s;
    s.tensorrt_version = v["tensorrt_version"].str();
    const std::string cc = v["gpu"]["compute_capability"].str();
    const auto dot = cc.find('.');
    if (dot == std::string::npos) throw std::runtime_error("bad compute_capability '" + cc + "' in the sidecar");
    s.cc_major = std::stoi(cc.substr(0, dot));
    s.cc_minor = std::stoi(cc.substr(dot + 1));
    s.gpu_name = v["gpu"]["name"].str();
    s.hardware_compatible = v["hardware_compatible"].boolean();
    s.precision = v["precision"].str();
    s.input_name = v["io"]["input"]["name"].str();
    s.output_name = v["io"]["output"]["name"].str();
    if (v["io"]["input"]["dtype"].str() != "float32" || v["io"]["output"]["dtype"].str() != "float32")
        throw std::runtime_error("this example handles engines with float32 input and output only");
    s.onnx_file = v["onnx_file"].str();
    s.engine_bytes = static_cast<long long>(v["engine_bytes"].number());
    s.min_batch = v["profile"]["min"].array().at(0).integer();
    s.opt_batch = v["profile"]["opt"].array().at(0).integer();
    s.max_batch = v["profile"]["max"].array().at(0).integer();
    for (const auto& name : v["class_names"].array()) s.class_names.push_back(name.str());
    s.preprocessing = dacovid::preprocessing_from_json(v["preprocessing"]);
    return s;
}

std::string rebuild_hint(const Sidecar& s, const std::string& engine_path) {
    std::string cmd = "dacovid-export trt " + s.onnx_file + " --" + s.precision + " -o " + engine_path +
                      " --min-batch " + std::to_string(s.min_batch) + " --opt-batch " + std::to_string(s.opt_batch) +
                      " --max-batch " + std::to_string(s.max_batch);
    return "rebuild it here with: " + cmd;
}

// The same rules as dacovid_export.trt.compat.check_engine_compatibility.
void check_compatibility(const Sidecar& s, const std::string& engine_path, const cudaDeviceProp& prop) {
    const int lib = getInferLibVersion();  // (MAJOR * 100 + MINOR) * 100 + PATCH
    const std::vector<int> running{lib / 10000, (lib / 100) % 100, lib % 100};
    const std::vector<int> built = version_parts(s.tensorrt_version);
    if (built.size() < 3 || !std::equal(running.begin(), running.end(), built.begin())) {
        std::ostringstream msg;
        msg << engine_path << " was built with TensorRT " << s.tensorrt_version << " but this program runs TensorRT "
            << running[0] << "." << running[1] << "." << running[2] << "; " << rebuild_hint(s, engine_path);
        throw std::runtime_error(msg.str());
    }
    std::ostringstream here;
    here << prop.major << "." << prop.minor << " (" << prop.name << ")";
    if (s.hardware_compatible) {
        if (prop.major < 8)
            throw std::runtime_error(engine_path + " is a hardware-compatible (ampere+) engine, which needs compute "
                                     "capability >= 8.0, but this GPU is " + here.str() + "; " + rebuild_hint(s, engine_path));
    } else if (prop.major != s.cc_major || prop.minor != s.cc_minor) {
        throw std::runtime_error(engine_path + " was built for compute capability " + std::to_string(s.cc_major) + "." +
                                 std::to_string(s.cc_minor) + " (" + s.gpu_name + ") but this GPU is " + here.str() +
                                 "; " + rebuild_hint(s, engine_path));
    }
}

int run(int argc, char** argv) {
    if (argc < 3) {
        std::cerr << "usage: " << argv[0] << " MODEL.engine IMAGE [IMAGE ...]\n"
                  << "  reads MODEL.engine.json beside the engine; images: PGM/PPM"
#ifdef DACOVID_WITH_OPENCV
                  << ", PNG, JPEG, BMP, TIFF"
#endif
                  << "\n";
        return 2;
    }
    const std::string engine_path = argv[1];
    const Sidecar meta = read_sidecar(engine_path + ".json");

    int device = 0;
    cuda_check(cudaGetDevice(&device), "cudaGetDevice");
    cudaDeviceProp prop{};
    cuda_check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    check_compatibility(meta, engine_path, prop);

    const std::string blob = read_file(engine_path);
    if (static_cast<long long>(blob.size()) != meta.engine_bytes)
        throw std::runtime_error(engine_path + " does not match its sidecar (size differs): " + rebuild_hint(meta, engine_path));

    Logger logger;
    std::unique_ptr<nvinfer1::IRuntime> runtime(nvinfer1::createInferRuntime(logger));
    if (!runtime) throw std::runtime_error("createInferRuntime failed");
    std::unique_ptr<nvinfer1::ICudaEngine> engine(runtime->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine) throw std::runtime_error("TensorRT could not deserialize " + engine_path + "; " + rebuild_hint(meta, engine_path));
    const char* in_name = meta.input_name.c_str();
    const char* out_name = meta.output_name.c_str();
    if (engine->getTensorIOMode(in_name) != nvinfer1::TensorIOMode::kINPUT ||
        engine->getTensorIOMode(out_name) != nvinfer1::TensorIOMode::kOUTPUT)
        throw std::runtime_error("the engine's tensors do not match the sidecar's input/output names");
    if (engine->getTensorDataType(in_name) != nvinfer1::DataType::kFLOAT ||
        engine->getTensorDataType(out_name) != nvinfer1::DataType::kFLOAT)
        throw std::runtime_error("this example handles float32 engine I/O only");
    std::unique_ptr<nvinfer1::IExecutionContext> context(engine->createExecutionContext());
    if (!context) throw std::runtime_error("createExecutionContext failed (too little free GPU memory?)");

    const int s = meta.preprocessing.image_size;
    const int k = static_cast<int>(meta.class_names.size());
    const int max_batch = meta.max_batch;
    const std::size_t image_floats = static_cast<std::size_t>(3) * s * s;

    // max-batch buffers, bound once; a smaller batch uses their first rows
    DeviceBuffer d_in = device_alloc(image_floats * max_batch * sizeof(float));
    DeviceBuffer d_out = device_alloc(static_cast<std::size_t>(k) * max_batch * sizeof(float));
    if (!context->setTensorAddress(in_name, d_in.get()) || !context->setTensorAddress(out_name, d_out.get()))
        throw std::runtime_error("setTensorAddress failed");
    Stream owned_stream;
    cudaStream_t stream = owned_stream.get();

    std::vector<std::string> images(argv + 2, argv + argc);
    std::vector<float> host_in(image_floats * max_batch);
    std::vector<float> host_out(static_cast<std::size_t>(k) * max_batch);
    std::cout << std::fixed << std::setprecision(4);
    for (std::size_t start = 0; start < images.size(); start += max_batch) {
        const int n = static_cast<int>(std::min<std::size_t>(max_batch, images.size() - start));
        if (n < meta.min_batch)
            throw std::runtime_error("the engine needs batches of at least " + std::to_string(meta.min_batch) +
                                     " images; rebuild it with --min-batch 1");
        for (int i = 0; i < n; ++i) {
            const std::vector<float> chw = dacovid::preprocess(dacovid::read_image(images[start + i]), meta.preprocessing);
            std::copy(chw.begin(), chw.end(), host_in.begin() + static_cast<std::ptrdiff_t>(i * image_floats));
        }
        if (!context->setInputShape(in_name, nvinfer1::Dims4{n, 3, s, s}))
            throw std::runtime_error("setInputShape rejected batch " + std::to_string(n));
        cuda_check(cudaMemcpyAsync(d_in.get(), host_in.data(), n * image_floats * sizeof(float), cudaMemcpyHostToDevice, stream),
                   "cudaMemcpyAsync (input)");
        if (!context->enqueueV3(stream)) throw std::runtime_error("enqueueV3 failed");
        cuda_check(cudaMemcpyAsync(host_out.data(), d_out.get(), static_cast<std::size_t>(n) * k * sizeof(float),
                                   cudaMemcpyDeviceToHost, stream),
                   "cudaMemcpyAsync (output)");
        cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
        const nvinfer1::Dims out_shape = context->getTensorShape(out_name);
        if (out_shape.nbDims != 2 || out_shape.d[0] != n || out_shape.d[1] != k)
            throw std::runtime_error("unexpected output shape " + join_shape(out_shape));

        for (int i = 0; i < n; ++i) {
            const float* logits = &host_out[static_cast<std::size_t>(i) * k];
            const float top = *std::max_element(logits, logits + k);
            double total = 0.0;
            std::vector<double> prob(k);
            for (int c = 0; c < k; ++c) total += prob[c] = std::exp(static_cast<double>(logits[c] - top));
            const int best = static_cast<int>(std::max_element(prob.begin(), prob.end()) - prob.begin());
            std::cout << images[start + i] << ": " << meta.class_names[best] << " (" << prob[best] / total << ") |";
            for (int c = 0; c < k; ++c) std::cout << " " << meta.class_names[c] << " " << prob[c] / total;
            std::cout << "\n";
        }
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
}
