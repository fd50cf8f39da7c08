// The interface every runtime implements (internal: services use dacovid/classifier.hpp).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "dacovid/classifier.hpp"

namespace dacovid {

class Classifier::Runtime {
public:
    virtual ~Runtime() = default;
    virtual const ModelInfo& info() const = 0;
    // float32 n x 3 x S x S -> float32 n x K logits. Must be safe to call from several threads at once.
    virtual std::vector<float> run(const float* batch, int n) const = 0;
};

using RuntimePtr = std::shared_ptr<const Classifier::Runtime>;

RuntimePtr open_openvino(const std::string& path, const Options& options);
#if defined(DACOVID_WITH_TENSORRT)
RuntimePtr open_tensorrt(const std::string& path, const Options& options);
#endif

// The first line of a runtime's (often multi-line) message that says something.
std::string one_line(const std::string& text);

}  // namespace dacovid
