// Classifier: opens an artifact with the runtime its kind needs, then decode -> preprocess -> run -> softmax.
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "runtime.hpp"

namespace dacovid {

namespace {

std::string lower_extension(const std::string& path) {
    const auto slash = path.find_last_of('/');
    const auto dot = path.find_last_of('.');
    std::string ext = (dot == std::string::npos || (slash != std::string::npos && dot < slash)) ? "" : path.substr(dot);
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return ext;
}

// Python's data.agreement.softmax: float64, max subtracted
std::vector<double> softmax(const float* logits, std::size_t k) {
    const float top = *std::max_element(logits, logits + k);
    std::vector<double> p(k);
    double total = 0.0;
    for (std::size_t c = 0; c < k; ++c) total += p[c] = std::exp(static_cast<double>(logits[c]) - static_cast<double>(top));
    for (double& v : p) v /= total;
    return p;
}

}  // namespace

std::string one_line(const std::string& text) {
    // OpenVINO's messages start with "Exception from src/...:" and "Check '...' failed at ..." lines
    std::istringstream in(text);
    std::string line, out;
    while (std::getline(in, line)) {
        while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
        if (line.empty() || line.rfind("Exception from ", 0) == 0 || line.rfind("Check '", 0) == 0) continue;
        out += (out.empty() ? "" : " ") + line;
        if (out.back() != ':') return out;  // "... failed with GeneralFailure:" says why on the next line
    }
    if (!out.empty()) return out;
    return text.empty() ? "unknown error" : text.substr(0, text.find('\n'));
}

Classifier::Classifier(std::shared_ptr<const Runtime> runtime, Options options)
    : runtime_(std::move(runtime)), options_(options) {}

Classifier Classifier::open(const std::string& path, const Options& options) {
    if (options.threads < 0) throw InputError("threads=" + std::to_string(options.threads) + ": give 0 (the runtime's default) or more");
    if (options.batch_size < 0 || options.batch_size > 1024)
        throw InputError("batch size " + std::to_string(options.batch_size) + ": give an integer from 1 to 1024");
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) throw InputError("model '" + path + "' does not exist or is not a file");
    const std::string ext = lower_extension(path);
    RuntimePtr runtime;
    if (ext == ".onnx") {
        runtime = open_openvino(path, options);
    } else if (ext == ".engine" || ext == ".plan") {
#if defined(DACOVID_WITH_TENSORRT)
        runtime = open_tensorrt(path, options);
#else
        throw InputError("'" + path + "' is a TensorRT engine, but this build of the dacovid runtime has no TensorRT: "
                         "rebuild it with TensorRT's (or TensorRT-RTX's) C++ headers, or run the ONNX model");
#endif
    } else {
        throw InputError("'" + path + "' is not a model this runtime opens: give a dacovid-export .onnx model or a .engine with its .engine.json");
    }
    Options effective = options;
    const int max_batch = runtime->info().max_batch;
    if (effective.batch_size == 0) effective.batch_size = max_batch > 0 ? std::min(max_batch, 16) : 16;
    if (max_batch > 0 && effective.batch_size > max_batch)
        throw InputError("batch size " + std::to_string(effective.batch_size) + " exceeds the largest batch '" + path +
                         "' accepts (" + std::to_string(max_batch) + ")");
    return Classifier(std::move(runtime), effective);
}

const ModelInfo& Classifier::info() const { return runtime_->info(); }

std::vector<float> Classifier::logits(const float* batch, int n) const {
    if (n < 1) throw InputError("no images to run");
    return runtime_->run(batch, n);
}

std::vector<Prediction> Classifier::predict(const std::vector<std::string>& files) const {
    const ModelInfo& info = runtime_->info();
    const std::size_t k = info.class_names.size();

    std::vector<Prediction> out(files.size());
    const std::size_t batch = static_cast<std::size_t>(options_.batch_size);
    std::vector<float> input;
    std::vector<std::size_t> rows;
    for (std::size_t start = 0; start < files.size(); start += batch) {
        const std::size_t end = std::min(files.size(), start + batch);
        input.clear();
        rows.clear();
        for (std::size_t i = start; i < end; ++i) {
            out[i].source = files[i];
            try {
                const std::vector<float> chw = preprocess(decode_image_file(files[i]), info.preprocessing);
                input.insert(input.end(), chw.begin(), chw.end());
                rows.push_back(i);
            } catch (const InputError& e) {
                out[i].error = e.what();
            } catch (const std::bad_alloc&) {
                out[i].error = "image '" + files[i] + "' is unreadable: not enough memory to decode it";
            }
        }
        if (rows.empty()) continue;
        const std::vector<float> logits = runtime_->run(input.data(), static_cast<int>(rows.size()));
        for (std::size_t r = 0; r < rows.size(); ++r) {
            Prediction& p = out[rows[r]];
            const float* row = &logits[r * k];
            p.ok = true;
            p.logits.assign(row, row + k);
            p.probabilities = softmax(row, k);
            p.index = static_cast<int>(std::max_element(p.probabilities.begin(), p.probabilities.end()) - p.probabilities.begin());
            p.class_name = info.class_names[static_cast<std::size_t>(p.index)];
        }

    }
    return out;
}

std::vector<std::string> compiled_runtimes() {
    std::vector<std::string> names{"openvino"};
#if defined(DACOVID_WITH_TENSORRT)
#if defined(DACOVID_TENSORRT_RTX)
    names.emplace_back("tensorrt-rtx");
#else
    names.emplace_back("tensorrt");
#endif
#endif
    return names;
}

}  // namespace dacovid
