// dacovid/classifier.hpp - the one public header of the dacovid C++ runtime.
//
// A Classifier opens a dacovid-export artifact (an ONNX model, or a TensorRT /
// TensorRT-RTX engine with its sidecar MODEL.engine.json) and classifies chest
// X-ray files. Everything it needs - class names, preprocessing, precision -
// comes from the artifact itself; an artifact without that metadata is refused.
//
//   dacovid::Classifier model = dacovid::Classifier::open("model.int8.onnx");
//   for (const dacovid::Prediction& p : model.predict({"a.png", "b.jpg"}))
//       if (p.ok) std::cout << p.source << " " << p.class_name << "\n";
//       else      std::cerr << "error: " << p.error << "\n";
//
// Threads: a Classifier (and every copy of it: copies share one compiled model)
// may be used from any number of threads at once. Each predict()/logits() call
// borrows an inference request from a pool owned by the compiled model (it grows
// to the number of concurrent callers and is reused), so N threads give the same
// answers as one thread for the same batches. Decoding and preprocessing run on
// the calling thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace dacovid {

// Bad input (a missing/corrupt/oversized image, an artifact that is not a dacovid model):
// what the CLI reports with exit code 2, as the Python CLI does. Other failures are std::runtime_error.
class InputError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// How an image becomes the network input; dacovid_export.data.preprocessing.Preprocessing.
struct Preprocessing {
    int image_size = 224;
    int resize_size = 256;
    std::string resize_policy = "shorter_side";  // or "squash"
    std::string interpolation = "bilinear";      // or "bicubic"
    std::array<float, 3> mean{0.485f, 0.456f, 0.406f};
    std::array<float, 3> std{0.229f, 0.224f, 0.225f};
};

// The same limits as the Python side: Pillow's Image.MAX_IMAGE_PIXELS (refused above it,
// as load_image refuses Pillow's warning band too) and preprocessing.MAX_ASPECT_RATIO.
constexpr std::uint64_t kMaxImagePixels = 89478485;
constexpr int kMaxAspectRatio = 16;

// Luminance in [0, 1], row-major, height x width: what load_image + to_float_gray give.
struct GrayImage {
    int width = 0;
    int height = 0;
    std::vector<float> pixels;
};

// PNG (1-16 bit grey, grey+alpha, RGB(A), palette), JPEG (grey, YCbCr; EXIF orientation applied)
// and PGM/PPM (P2, P3, P5, P6), recognised by content. DICOM is refused with a line that says to convert.
// Throws InputError for anything unreadable, over kMaxImagePixels or past the kMaxAspectRatio:1 rule.
GrayImage decode_image_file(const std::string& path);
GrayImage decode_image(const std::uint8_t* data, std::size_t size, const std::string& label);

// float32 3 x S x S (CHW), normalised: resize, centre crop, grey -> 3 channels, (x - mean) / std.
std::vector<float> preprocess(const GrayImage& image, const Preprocessing& spec);

// Reads a "preprocessing" JSON object (as stored in the artifact) into a Preprocessing; InputError when malformed.
Preprocessing preprocessing_from_json(const std::string& json_object);

// What an artifact says about itself.
struct ModelInfo {
    std::string path;
    std::string kind;      // "onnx", "tensorrt" or "tensorrt-rtx"
    std::string runtime;   // e.g. "openvino/cpu (inference precision f32)"
    std::string precision; // "fp32", "fp16", "int8" or "bf16", from the artifact
    std::string source_sha256;
    std::vector<std::string> class_names;
    Preprocessing preprocessing;
    std::string preprocessing_json;  // the artifact's own preprocessing entry, verbatim
    int max_batch = 0;               // 0: any batch size
};

struct Prediction {
    std::string source;  // the file
    bool ok = false;
    std::string error;   // one line, when !ok
    int index = -1;
    std::string class_name;
    std::vector<float> logits;
    std::vector<double> probabilities;  // softmax in double precision, as the Python side
};

struct Options {
    int threads = 0;           // OpenVINO INFERENCE_NUM_THREADS per request (0: OpenVINO's default)
    int batch_size = 0;        // images per inference call in predict() (0: min(16, the artifact's max))
};

class Classifier {
public:
    // Opens MODEL.onnx (OpenVINO, CPU) or MODEL.engine/.plan (TensorRT / TensorRT-RTX, when compiled in).
    // InputError for a missing file, a file that is not a model, or a model without dacovid metadata.
    static Classifier open(const std::string& path, const Options& options = {});

    const ModelInfo& info() const;

    // Decodes, preprocesses and classifies every file; a bad image gives a Prediction with ok == false,
    // the others are still classified. Output order is input order.
    std::vector<Prediction> predict(const std::vector<std::string>& files) const;

    // Raw logits (n x K, row-major) for already preprocessed input (n x 3 x S x S).
    std::vector<float> logits(const float* batch, int n) const;

    class Runtime;  // implementation interface (src/runtime.hpp)

private:
    explicit Classifier(std::shared_ptr<const Runtime> runtime, Options options);
    std::shared_ptr<const Runtime> runtime_;
    Options options_;
};

// Which runtimes this build holds, e.g. {"openvino"} or {"openvino", "tensorrt"}.
std::vector<std::string> compiled_runtimes();

}  // namespace dacovid
