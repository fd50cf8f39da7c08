// Preprocessing step by step as dacovid_export.data.preprocessing.preprocess: resize (Pillow's antialiased
// bilinear/bicubic on float32 planes, shorter side or squash), centre crop, grey -> 3 channels, (x - mean) / std.
// Bit-identical to Python for the same luminance plane (tests/cpp/test_preprocessing.py).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "dacovid/classifier.hpp"
#include "json_lite.hpp"

namespace dacovid {
namespace detail {

struct Filter {
    double support;
    double (*fn)(double);
};

double bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

double bicubic(double x) {  // a = -0.5, as Pillow
    constexpr double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

// Per output index: first input index, count, normalised weights (Pillow's precompute_coeffs).
struct Coefficients {
    std::vector<int> first;
    std::vector<int> count;
    std::vector<double> weights;  // out_size x ksize
    int ksize = 0;
};

Coefficients coefficients(int in_size, int out_size, const Filter& filter) {
    const double scale = static_cast<double>(in_size) / out_size;
    const double filterscale = scale < 1.0 ? 1.0 : scale;  // antialias when shrinking
    const double support = filter.support * filterscale;
    Coefficients c;
    c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
    c.first.resize(out_size);
    c.count.resize(out_size);
    c.weights.assign(static_cast<std::size_t>(out_size) * c.ksize, 0.0);
    for (int xx = 0; xx < out_size; ++xx) {
        const double center = (xx + 0.5) * scale;
        const double ss = 1.0 / filterscale;
        int xmin = static_cast<int>(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = static_cast<int>(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double* k = &c.weights[static_cast<std::size_t>(xx) * c.ksize];
        double ww = 0.0;
        for (int x = 0; x < xmax; ++x) {
            const double w = filter.fn((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (int x = 0; x < xmax; ++x)
            if (ww != 0.0) k[x] /= ww;
        c.first[xx] = xmin;
        c.count[xx] = xmax;
    }
    return c;
}

// Pillow's two-pass float32 ("F" mode) resampling: horizontal, then vertical; double accumulators.
GrayImage resize(const GrayImage& in, int out_w, int out_h, const std::string& interpolation) {
    const Filter filter = interpolation == "bicubic" ? Filter{2.0, bicubic} : Filter{1.0, bilinear};
    GrayImage tmp = in;
    if (out_w != in.width) {
        const Coefficients c = coefficients(in.width, out_w, filter);
        tmp.width = out_w;
        tmp.pixels.assign(static_cast<std::size_t>(out_w) * in.height, 0.0f);
        for (int y = 0; y < in.height; ++y) {
            const float* row = &in.pixels[static_cast<std::size_t>(y) * in.width];
            for (int xx = 0; xx < out_w; ++xx) {
                const double* k = &c.weights[static_cast<std::size_t>(xx) * c.ksize];
                double s = 0.0;
                for (int x = 0; x < c.count[xx]; ++x) s += row[c.first[xx] + x] * k[x];
                tmp.pixels[static_cast<std::size_t>(y) * out_w + xx] = static_cast<float>(s);
            }
        }
    }
    if (out_h == tmp.height) return tmp;
    const Coefficients c = coefficients(tmp.height, out_h, filter);
    GrayImage out;
    out.width = tmp.width;
    out.height = out_h;
    out.pixels.assign(static_cast<std::size_t>(out.width) * out_h, 0.0f);
    for (int yy = 0; yy < out_h; ++yy) {
        const double* k = &c.weights[static_cast<std::size_t>(yy) * c.ksize];
        for (int x = 0; x < out.width; ++x) {
            double s = 0.0;
            for (int y = 0; y < c.count[yy]; ++y)
                s += tmp.pixels[static_cast<std::size_t>(c.first[yy] + y) * tmp.width + x] * k[y];
            out.pixels[static_cast<std::size_t>(yy) * out.width + x] = static_cast<float>(s);
        }
    }
    return out;
}

}  // namespace detail

// 3 x S x S float32, CHW, normalised: the network's input for one image.
std::vector<float> preprocess(const GrayImage& image, const Preprocessing& p) {
    const int h = image.height, w = image.width, target = p.resize_size;
    if (w <= 0 || h <= 0 || image.pixels.size() != static_cast<std::size_t>(w) * static_cast<std::size_t>(h))
        throw InputError("image of " + std::to_string(w) + "x" + std::to_string(h) + " pixels is empty: nothing to classify");
    if (std::max(w, h) > kMaxAspectRatio * std::min(w, h))  // as Python's _resize checks arrays too
        throw InputError("image of " + std::to_string(w) + "x" + std::to_string(h) + " pixels is unreadable: sides in a ratio over " +
                         std::to_string(kMaxAspectRatio) + ":1; crop it to the radiograph");
    int new_w, new_h;
    if (p.resize_policy == "squash") {
        new_w = new_h = target;
    } else if (h <= w) {
        // Python's int(round(...)): ties to even, which std::nearbyint does in the default rounding mode
        new_h = target;
        new_w = std::max(target, static_cast<int>(std::nearbyint(static_cast<double>(w) * target / h)));
    } else {
        new_w = target;
        new_h = std::max(target, static_cast<int>(std::nearbyint(static_cast<double>(h) * target / w)));
    }
    const GrayImage resized = (new_w == w && new_h == h) ? image : detail::resize(image, new_w, new_h, p.interpolation);
    const int s = p.image_size;
    const int top = (resized.height - s) / 2, left = (resized.width - s) / 2;
    std::vector<float> chw(static_cast<std::size_t>(3) * s * s);
    for (int c = 0; c < 3; ++c) {
        for (int y = 0; y < s; ++y) {
            for (int x = 0; x < s; ++x) {
                // no clipping after the resize (bicubic may overshoot [0, 1]), as in Python
                const float g = resized.pixels[static_cast<std::size_t>(top + y) * resized.width + (left + x)];
                chw[(static_cast<std::size_t>(c) * s + y) * s + x] = (g - p.mean[c]) / p.std[c];
            }
        }
    }
    return chw;
}

Preprocessing preprocessing_from_json(const std::string& text) {
    try {
        const jsonlite::Value v = jsonlite::parse(text);
        Preprocessing p;
        p.image_size = v["image_size"].integer();
        // resize_size is always written explicitly (the effective size), never null
        p.resize_size = v["resize_size"].integer();
        if (const auto* policy = v.find("resize_policy")) p.resize_policy = policy->str();
        if (const auto* interp = v.find("interpolation")) p.interpolation = interp->str();
        for (int c = 0; c < 3; ++c) {
            p.mean[c] = static_cast<float>(v["mean"].array().at(c).number());
            p.std[c] = static_cast<float>(v["std"].array().at(c).number());
            if (!(p.std[c] > 0.0f)) throw InputError("std values must be > 0");
        }
        if (const auto* color = v.find("color"); color && color->str() != "gray_to_3ch")
            throw InputError("color '" + color->str() + "' is not one this runtime applies (gray_to_3ch)");
        if (const auto* scale = v.find("scale"); scale && scale->str() != "0-1")
            throw InputError("scale '" + scale->str() + "' is not one this runtime applies (0-1)");
        if (const auto* layout = v.find("layout"); layout && layout->str() != "NCHW")
            throw InputError("layout '" + layout->str() + "' is not one this runtime applies (NCHW)");
        if (p.image_size < 32 || p.image_size > 1024 || p.resize_size < p.image_size)
            throw InputError("sizes are inconsistent (image_size " + std::to_string(p.image_size) + ", resize_size " +
                             std::to_string(p.resize_size) + ")");
        if (p.resize_policy != "shorter_side" && p.resize_policy != "squash")
            throw InputError("unknown resize_policy '" + p.resize_policy + "'");
        if (p.interpolation != "bilinear" && p.interpolation != "bicubic")
            throw InputError("unknown interpolation '" + p.interpolation + "'");
        return p;
    } catch (const std::exception& e) {
        throw InputError(std::string("preprocessing metadata is malformed: ") + e.what());
    }
}

}  // namespace dacovid
