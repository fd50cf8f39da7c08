// OpenVINO on the CPU for the project's ONNX models: metadata from the model's rt_info ("framework" holds every
// ONNX metadata_props entry), the inference precision always set explicitly (f32; bf16 only for a model marked
// bf16), as dacovid_export.core.openvino_model.compile_for_cpu does: on CPUs with AVX512-BF16/AMX, OpenVINO's
// default would silently be BF16.
#include <openvino/frontend/manager.hpp>
#include <openvino/openvino.hpp>

#include <algorithm>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "json_lite.hpp"
#include "runtime.hpp"

namespace dacovid {
namespace {

const char* const kRequired[] = {"class_names", "preprocessing", "precision", "source_sha256"};

class OpenVinoRuntime final : public Classifier::Runtime {
public:
    OpenVinoRuntime(const std::string& path, const Options& options) {
        // an ONNX ModelProto starts with field 1 (ir_version, tag 0x08); anything else is refused here, before
        // OpenVINO tries every frontend it has on it (and the TensorFlow one prints to stderr)
        {
            std::ifstream in(path, std::ios::binary);
            if (in.get() != 0x08) throw InputError("'" + path + "' is not an ONNX model (not an ONNX protobuf file)");
        }
        std::shared_ptr<ov::Model> model;
        try {
            // the ONNX frontend only: Core::read_model would go on to try every other frontend on a damaged file
            // (TensorFlow's prints its own lines to stderr); the model is what read_model gives for an ONNX file
            ov::frontend::FrontEndManager manager;
            const ov::frontend::FrontEnd::Ptr onnx = manager.load_by_framework("onnx");
            const ov::frontend::InputModel::Ptr input = onnx->load(path);
            if (!input) throw std::runtime_error("the ONNX frontend did not load it");
            model = onnx->convert(input);
        } catch (const std::exception& e) {
            throw InputError("OpenVINO could not read '" + path + "' as a model: " + one_line(e.what()));
        }
        read_metadata(path, *model);
        if (model->inputs().size() != 1 || model->outputs().size() != 1)
            throw InputError("'" + path + "' has " + std::to_string(model->inputs().size()) + " inputs and " +
                             std::to_string(model->outputs().size()) + " outputs; a dacovid model has one of each");
        ov::element::Type precision = ov::element::f32;
        if (info_.precision == "bf16") {
            const auto caps = core_.get_property("CPU", ov::device::capabilities);
            if (std::find(caps.begin(), caps.end(), ov::device::capability::BF16) == caps.end())
                throw InputError("'" + path + "' is marked for BF16 execution but this CPU has no BF16 support "
                                 "(OpenVINO reports none); run the FP32 model it was made from");
            precision = ov::element::bf16;
        }
        ov::AnyMap config{ov::hint::inference_precision(precision), ov::hint::performance_mode(ov::hint::PerformanceMode::LATENCY)};
        if (options.threads > 0) config.emplace(ov::inference_num_threads(options.threads));
        try {
            compiled_ = core_.compile_model(model, "CPU", config);
        } catch (const std::exception& e) {
            throw std::runtime_error("OpenVINO could not compile '" + path + "' for the CPU: " + one_line(e.what()));
        }
        // a hint the plugin silently dropped would be a false precision claim
        if (compiled_.get_property(ov::hint::inference_precision) != precision)
            throw std::runtime_error("OpenVINO compiled '" + path + "' with another inference precision than " + precision.get_type_name());
        info_.runtime = "openvino/cpu (inference precision " + precision.get_type_name() + ")";
    }

    const ModelInfo& info() const override { return info_; }

    std::vector<float> run(const float* batch, int n) const override {
        const int s = info_.preprocessing.image_size;
        const std::size_t k = info_.class_names.size();
        ov::InferRequest request = acquire();
        std::vector<float> out;
        try {
            // wraps the caller's memory: no copy of the input
            ov::Tensor input(ov::element::f32, ov::Shape{static_cast<std::size_t>(n), 3, static_cast<std::size_t>(s), static_cast<std::size_t>(s)},
                             const_cast<float*>(batch));
            request.set_input_tensor(input);
            request.infer();
            const ov::Tensor output = request.get_output_tensor();
            if (output.get_shape() != ov::Shape{static_cast<std::size_t>(n), k} || output.get_element_type() != ov::element::f32)
                throw std::runtime_error("'" + info_.path + "' gave an output of shape " + output.get_shape().to_string() +
                                         ", expected [" + std::to_string(n) + "," + std::to_string(k) + "] float32");
            const float* data = output.data<const float>();
            out.assign(data, data + static_cast<std::size_t>(n) * k);
        } catch (...) {
            release(std::move(request));
            throw;
        }
        release(std::move(request));
        return out;
    }

private:
    void read_metadata(const std::string& path, const ov::Model& model) {
        const std::string refusal = "'" + path + "' is not a dacovid-export model: its ONNX metadata lacks ";
        if (!model.has_rt_info("framework")) throw InputError(refusal + "every entry (export it with 'dacovid-export onnx')");
        const ov::AnyMap meta = model.get_rt_info<ov::AnyMap>("framework");
        std::vector<std::string> missing;
        for (const char* key : kRequired)
            if (meta.find(key) == meta.end()) missing.emplace_back(key);
        if (!missing.empty()) {
            std::string names;
            for (const auto& m : missing) names += (names.empty() ? "" : ", ") + m;
            throw InputError(refusal + names + " (export it with 'dacovid-export onnx')");
        }
        auto get = [&](const char* key) { return meta.at(key).as<std::string>(); };
        if (auto it = meta.find("format_version"); it != meta.end()) {
            const std::string v = it->second.as<std::string>();
            if (v != "1") throw InputError("'" + path + "' has dacovid-onnx format version " + v + ", newer than this runtime reads (1)");
        }
        info_.path = path;
        info_.kind = "onnx";
        info_.precision = get("precision");
        if (info_.precision != "fp32" && info_.precision != "fp16" && info_.precision != "int8" && info_.precision != "bf16")
            throw InputError("'" + path + "' has an unknown precision '" + info_.precision + "' in its metadata");
        info_.source_sha256 = get("source_sha256");
        info_.preprocessing_json = get("preprocessing");
        try {
            info_.preprocessing = preprocessing_from_json(info_.preprocessing_json);
        } catch (const InputError& e) {
            throw InputError("'" + path + "': " + e.what());
        }
        try {
            const jsonlite::Value names = jsonlite::parse(get("class_names"));
            for (const auto& name : names.array()) info_.class_names.push_back(name.str());
            if (auto it = meta.find("max_batch"); it != meta.end())
                info_.max_batch = jsonlite::parse(it->second.as<std::string>()).integer();
        } catch (const std::exception& e) {
            throw InputError("'" + path + "' has malformed metadata: " + e.what());
        }
        if (info_.class_names.size() < 2) throw InputError("'" + path + "' names fewer than 2 classes in its metadata");
    }

    ov::InferRequest acquire() const {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!idle_.empty()) {
                ov::InferRequest r = std::move(idle_.back());
                idle_.pop_back();
                return r;
            }
        }
        return const_cast<ov::CompiledModel&>(compiled_).create_infer_request();
    }
    void release(ov::InferRequest request) const {
        std::lock_guard<std::mutex> lock(mutex_);
        idle_.push_back(std::move(request));
    }

    ov::Core core_;
    ov::CompiledModel compiled_;
    ModelInfo info_;
    mutable std::mutex mutex_;
    mutable std::vector<ov::InferRequest> idle_;  // one per concurrent caller at most, reused
};

}  // namespace

RuntimePtr open_openvino(const std::string& path, const Options& options) {
    return std::make_shared<const OpenVinoRuntime>(path, options);
}

}  // namespace dacovid
