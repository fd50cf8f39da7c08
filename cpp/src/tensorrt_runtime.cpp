// TensorRT 10/11 and TensorRT-RTX engines behind the Classifier interface (compiled only where the C++ headers
// are found: the pip wheels ship none, so this file is not compiled on the project's CI machines).
//
// The engine's sidecar MODEL.engine.json is the source of truth (class names, preprocessing, precision, I/O
// names, profile). Before deserializing, the sidecar's library version and GPU targets are checked against the
// running library and GPU, and a mismatch names the command that rebuilds the engine. Both libraries share the
// name-based runtime API used here (deserializeCudaEngine, setInputShape, setTensorAddress, enqueueV3);
// DACOVID_TENSORRT_RTX selects the TensorRT-RTX flavour (libtensorrt_rtx, its sidecar runtime "tensorrt-rtx").
#include <NvInfer.h>
#include <NvInferVersion.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "json_lite.hpp"
#include "runtime.hpp"

namespace dacovid {
namespace {

#if defined(DACOVID_TENSORRT_RTX)
constexpr const char* kRuntimeName = "tensorrt-rtx";
constexpr const char* kLibraryName = "TensorRT-RTX";
#else
static_assert(NV_TENSORRT_MAJOR >= 10, "the dacovid runtime needs TensorRT 10 or newer (enqueueV3, name-based I/O)");
constexpr const char* kRuntimeName = "tensorrt";
constexpr const char* kLibraryName = "TensorRT";
#endif

class Logger : public nvinfer1::ILogger {
public:
    void log(Severity severity, const char* msg) noexcept override {
        if (severity <= Severity::kERROR) last_error = msg;  // kept for the one-line error; nothing printed
    }
    std::string last_error;
};

void cuda_check(cudaError_t status, const char* what) {
    if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

std::string read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw InputError("cannot open '" + path + "'");
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

struct Sidecar {
    std::string runtime, version, gpu_name, precision, input_name, output_name, onnx_file, preprocessing_json, source_sha256;
    std::vector<std::string> targets;  // "8.6", ...: the build GPU, or TensorRT-RTX's compute capabilities
    bool hardware_compatible = false;
    long long engine_bytes = 0;
    int min_batch = 1, opt_batch = 1, max_batch = 1;
    std::vector<std::string> class_names;
};

Sidecar read_sidecar(const std::string& engine_path) {
    const std::string path = engine_path + ".json";
    std::string text;
    try {
        text = read_all(path);
    } catch (const InputError&) {
        throw InputError("'" + engine_path + "' has no sidecar '" + path + "': engines are only opened with the metadata "
                         "'dacovid-export trt' writes beside them");
    }
    try {
        const jsonlite::Value v = jsonlite::parse(text);
        if (v["format"].str() != "dacovid-engine") throw InputError("'" + path + "' is not a dacovid-export engine sidecar");
        Sidecar s;
        const jsonlite::Value* runtime = v.find("runtime");
        s.runtime = runtime ? runtime->str() : "tensorrt";
        if (s.runtime != kRuntimeName)
            throw InputError("'" + engine_path + "' is a " + s.runtime + " engine; this build of the dacovid runtime links " +
                             kLibraryName + ": build the other runtime in, or build a " + kRuntimeName + " engine");
        s.version = v["tensorrt_version"].str();
        if (const jsonlite::Value* gpu = v.find("gpu"); gpu && !gpu->is_null()) {
            s.gpu_name = (*gpu)["name"].str();
            s.targets.push_back((*gpu)["compute_capability"].str());
        }
        if (const jsonlite::Value* ccs = v.find("compute_capabilities"))
            for (const auto& cc : ccs->array())
                if (std::find(s.targets.begin(), s.targets.end(), cc.str()) == s.targets.end()) s.targets.push_back(cc.str());
        s.hardware_compatible = v["hardware_compatible"].boolean();
        s.precision = v["precision"].str();
        s.input_name = v["io"]["input"]["name"].str();
        s.output_name = v["io"]["output"]["name"].str();
        if (v["io"]["input"]["dtype"].str() != "float32" || v["io"]["output"]["dtype"].str() != "float32")
            throw InputError("'" + engine_path + "' has non-float32 I/O; the dacovid runtime feeds and reads float32");
        s.onnx_file = v["onnx_file"].str();
        s.engine_bytes = static_cast<long long>(v["engine_bytes"].number());
        s.min_batch = v["profile"]["min"].array().at(0).integer();
        s.opt_batch = v["profile"]["opt"].array().at(0).integer();
        s.max_batch = v["profile"]["max"].array().at(0).integer();
        for (const auto& name : v["class_names"].array()) s.class_names.push_back(name.str());
        if (const jsonlite::Value* src = v.find("source_sha256"); src && !src->is_null()) s.source_sha256 = src->str();
        s.preprocessing_json = jsonlite::object_text(text, "preprocessing");
        return s;
    } catch (const InputError&) {
        throw;
    } catch (const std::exception& e) {
        throw InputError("'" + path + "' is not a readable engine sidecar: " + e.what());
    }
}

std::string rebuild_hint(const Sidecar& s, const std::string& engine_path) {
    return "rebuild it here with: dacovid-export trt " + s.onnx_file + " --" + s.precision + " -o " + engine_path +
           " --runtime " + s.runtime + " --min-batch " + std::to_string(s.min_batch) + " --opt-batch " +
           std::to_string(s.opt_batch) + " --max-batch " + std::to_string(s.max_batch);
}

// The rules of dacovid_export.trt.compat.check_engine_compatibility: same library version, and a GPU the engine targets.
void check_compatibility(const Sidecar& s, const std::string& engine_path, const cudaDeviceProp& prop) {
    const int lib = getInferLibVersion();  // (MAJOR * 100 + MINOR) * 100 + PATCH
    const std::vector<int> running{lib / 10000, (lib / 100) % 100, lib % 100};
    const std::vector<int> built = version_parts(s.version);
    if (built.size() < 3 || !std::equal(running.begin(), running.end(), built.begin())) {
        std::ostringstream msg;
        msg << engine_path << " was built with " << kLibraryName << " " << s.version << " but this program runs " << running[0]
            << "." << running[1] << "." << running[2] << "; " << rebuild_hint(s, engine_path);
        throw InputError(msg.str());
    }
    const std::string here = std::to_string(prop.major) + "." + std::to_string(prop.minor);
    if (s.hardware_compatible) {
        if (prop.major < 8)
            throw InputError(engine_path + " is a hardware-compatible (ampere+) engine, which needs compute capability >= 8.0, "
                             "but this GPU (" + prop.name + ") is " + here + "; " + rebuild_hint(s, engine_path));
    } else if (std::find(s.targets.begin(), s.targets.end(), here) == s.targets.end()) {
        std::string want;
        for (const auto& t : s.targets) want += (want.empty() ? "" : ", ") + t;
        throw InputError(engine_path + " was built for compute capability " + want + " but this GPU (" + prop.name + ") is " +
                         here + "; " + rebuild_hint(s, engine_path));
    }
}

// One execution context with its stream and max-batch device buffers: what one concurrent caller uses.
struct Slot {
    std::unique_ptr<nvinfer1::IExecutionContext> context;
    cudaStream_t stream = nullptr;
    void* input = nullptr;
    void* output = nullptr;
    ~Slot() {
        context.reset();
        if (stream) cudaStreamDestroy(stream);
        if (input) cudaFree(input);
        if (output) cudaFree(output);
    }
};

class TensorRtRuntime final : public Classifier::Runtime {
public:
    TensorRtRuntime(const std::string& path, const Options&) : meta_(read_sidecar(path)) {
        int device = 0;
        cuda_check(cudaGetDevice(&device), "no CUDA device (cudaGetDevice)");
        cudaDeviceProp prop{};
        cuda_check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
        check_compatibility(meta_, path, prop);
        const std::string blob = read_all(path);
        if (static_cast<long long>(blob.size()) != meta_.engine_bytes)
            throw InputError(path + " does not match its sidecar (size differs): " + rebuild_hint(meta_, path));
        runtime_.reset(nvinfer1::createInferRuntime(logger_));
        if (!runtime_) throw std::runtime_error(std::string(kLibraryName) + ": createInferRuntime failed");
        engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
        if (!engine_)
            throw InputError(std::string(kLibraryName) + " could not deserialize " + path + " (" + logger_.last_error + "); " +
                             rebuild_hint(meta_, path));
        const char* in = meta_.input_name.c_str();
        const char* out = meta_.output_name.c_str();
        if (engine_->getTensorIOMode(in) != nvinfer1::TensorIOMode::kINPUT || engine_->getTensorIOMode(out) != nvinfer1::TensorIOMode::kOUTPUT)
            throw InputError(path + ": the engine's tensors do not match the sidecar's input/output names");
        if (engine_->getTensorDataType(in) != nvinfer1::DataType::kFLOAT || engine_->getTensorDataType(out) != nvinfer1::DataType::kFLOAT)
            throw InputError(path + ": the engine's I/O is not float32");
        info_.path = path;
        info_.kind = kRuntimeName;
        info_.precision = meta_.precision;
        info_.source_sha256 = meta_.source_sha256;
        info_.class_names = meta_.class_names;
        info_.preprocessing_json = meta_.preprocessing_json;
        info_.preprocessing = preprocessing_from_json(meta_.preprocessing_json);
        info_.max_batch = meta_.max_batch;
        info_.runtime = std::string(kRuntimeName) + "/cuda (" + kLibraryName + " " + meta_.version + ")";
    }

    const ModelInfo& info() const override { return info_; }

    std::vector<float> run(const float* batch, int n) const override {
        if (n < meta_.min_batch || n > meta_.max_batch)
            throw InputError("batch of " + std::to_string(n) + " is outside the engine's profile (" + std::to_string(meta_.min_batch) +
                             ".." + std::to_string(meta_.max_batch) + ")");
        const int s = info_.preprocessing.image_size;
        const int k = static_cast<int>(info_.class_names.size());
        std::unique_ptr<Slot> slot = acquire();
        const char* in = meta_.input_name.c_str();
        const char* out = meta_.output_name.c_str();
        const std::size_t in_bytes = static_cast<std::size_t>(n) * 3 * s * s * sizeof(float);
        const std::size_t out_bytes = static_cast<std::size_t>(n) * k * sizeof(float);
        std::vector<float> logits(static_cast<std::size_t>(n) * k);
        if (!slot->context->setInputShape(in, nvinfer1::Dims4{n, 3, s, s}))
            throw std::runtime_error("setInputShape rejected batch " + std::to_string(n));
        cuda_check(cudaMemcpyAsync(slot->input, batch, in_bytes, cudaMemcpyHostToDevice, slot->stream), "cudaMemcpyAsync (input)");
        if (!slot->context->enqueueV3(slot->stream)) throw std::runtime_error("enqueueV3 failed: " + logger_.last_error);
        cuda_check(cudaMemcpyAsync(logits.data(), slot->output, out_bytes, cudaMemcpyDeviceToHost, slot->stream), "cudaMemcpyAsync (output)");
        cuda_check(cudaStreamSynchronize(slot->stream), "cudaStreamSynchronize");
        const nvinfer1::Dims shape = slot->context->getTensorShape(out);
        if (shape.nbDims != 2 || shape.d[0] != n || shape.d[1] != k) throw std::runtime_error("unexpected output shape from the engine");
        release(std::move(slot));
        return logits;
    }

private:
    std::unique_ptr<Slot> acquire() const {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!idle_.empty()) {
                std::unique_ptr<Slot> slot = std::move(idle_.back());
                idle_.pop_back();
                return slot;
            }
        }
        auto slot = std::make_unique<Slot>();
        slot->context.reset(engine_->createExecutionContext());
        if (!slot->context) throw std::runtime_error("createExecutionContext failed (too little free GPU memory?)");
        const int s = info_.preprocessing.image_size;
        cuda_check(cudaStreamCreate(&slot->stream), "cudaStreamCreate");
        cuda_check(cudaMalloc(&slot->input, static_cast<std::size_t>(meta_.max_batch) * 3 * s * s * sizeof(float)), "cudaMalloc");
        cuda_check(cudaMalloc(&slot->output, static_cast<std::size_t>(meta_.max_batch) * info_.class_names.size() * sizeof(float)), "cudaMalloc");
        if (!slot->context->setTensorAddress(meta_.input_name.c_str(), slot->input) ||
            !slot->context->setTensorAddress(meta_.output_name.c_str(), slot->output))
            throw std::runtime_error("setTensorAddress failed");
        return slot;
    }
    void release(std::unique_ptr<Slot> slot) const {
        std::lock_guard<std::mutex> lock(mutex_);
        idle_.push_back(std::move(slot));
    }

    Sidecar meta_;
    mutable Logger logger_;
    std::unique_ptr<nvinfer1::IRuntime> runtime_;
    std::unique_ptr<nvinfer1::ICudaEngine> engine_;
    ModelInfo info_;
    mutable std::mutex mutex_;
    mutable std::vector<std::unique_ptr<Slot>> idle_;  // one execution context per concurrent caller, reused
};

}  // namespace

RuntimePtr open_tensorrt(const std::string& path, const Options& options) {
    return std::make_shared<const TensorRtRuntime>(path, options);
}

}  // namespace dacovid
