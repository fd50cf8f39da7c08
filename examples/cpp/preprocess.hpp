// preprocess.hpp - the dacovid-export preprocessing in C++, matching the Python package.
//
// An image becomes float32 3 x S x S (CHW) exactly as dacovid_export.data.preprocessing
// does it, so the engine sees the same numbers as in the parity check:
//
//   decode -> luminance in [0, 1] (8-bit / 255, 16-bit / 65535; RGB through
//   Pillow's integer luma L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16)
//   -> resize (shorter side to resize_size, or "squash" both sides) with
//   Pillow's antialiased bilinear/bicubic filter on float32 planes
//   -> centre crop to image_size -> replicate to 3 channels -> (x - mean) / std.
//
// Images: binary and plain PGM/PPM (P2, P3, P5, P6; 8 or 16 bit, any maxval,
// rescaled like Pillow does) without any library. PNG/JPEG/BMP/TIFF need
// OpenCV (build with DACOVID_WITH_OPENCV); JPEG decoders differ slightly
// between libraries, and OpenCV does not apply EXIF orientation here.
//
// No TensorRT or CUDA in this header: it is built and checked on its own.
#pragma once

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "json_lite.hpp"

#ifdef DACOVID_WITH_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#endif

namespace dacovid {

struct Preprocessing {
    int image_size = 224;
    int resize_size = 256;
    std::string resize_policy = "shorter_side";  // or "squash"
    std::string interpolation = "bilinear";      // or "bicubic"
    std::array<float, 3> mean{0.485f, 0.456f, 0.406f};
    std::array<float, 3> std{0.229f, 0.224f, 0.225f};
};

// The "preprocessing" object of a sidecar (or of ArtifactInfo.to_dict()).
inline Preprocessing preprocessing_from_json(const jsonlite::Value& v) {
    Preprocessing p;
    p.image_size = v["image_size"].integer();
    // resize_size is always written explicitly (the effective size), never null
    p.resize_size = v["resize_size"].integer();
    if (const auto* policy = v.find("resize_policy")) p.resize_policy = policy->str();
    if (const auto* interp = v.find("interpolation")) p.interpolation = interp->str();
    for (int c = 0; c < 3; ++c) {
        p.mean[c] = static_cast<float>(v["mean"].array().at(c).number());
        p.std[c] = static_cast<float>(v["std"].array().at(c).number());
    }
    if (const auto* color = v.find("color"); color && color->str() != "gray_to_3ch")
        throw std::runtime_error("preprocessing color '" + color->str() + "' is not supported by this example");
    if (p.image_size < 32 || p.resize_size < p.image_size)
        throw std::runtime_error("preprocessing sizes are inconsistent (image_size < 32 or resize_size < image_size)");
    if (p.resize_policy != "shorter_side" && p.resize_policy != "squash")
        throw std::runtime_error("unknown resize_policy '" + p.resize_policy + "'");
    if (p.interpolation != "bilinear" && p.interpolation != "bicubic")
        throw std::runtime_error("unknown interpolation '" + p.interpolation + "'");
    return p;
}

// Luminance plane, row-major, values in [0, 1].
struct GrayImage {
    int width = 0;
    int height = 0;
    std::vector<float> pixels;  // height x width
};

namespace detail {

// Pillow's RGB -> L conversion for 8-bit channels (Convert.c, L24)
inline std::uint8_t pillow_luma(unsigned r, unsigned g, unsigned b) {
    return static_cast<std::uint8_t>((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
}

// Pillow rescales a PNM sample whose maxval is not 255/65535 with Python's round (ties to even)
inline unsigned rescale_sample(unsigned value, unsigned maxval, unsigned out_max) {
    if (maxval == out_max) return value;
    const double scaled = std::nearbyint(static_cast<double>(value) / maxval * out_max);
    return static_cast<unsigned>(std::min<double>(scaled, out_max));
}

class PnmReader {
public:
    explicit PnmReader(std::vector<unsigned char> bytes) : b_(std::move(bytes)) {}

    std::string token() {
        for (;;) {  // whitespace and '#' comments separate header tokens
            while (pos_ < b_.size() && std::isspace(b_[pos_])) ++pos_;
            if (pos_ < b_.size() && b_[pos_] == '#') {
                while (pos_ < b_.size() && b_[pos_] != '\n' && b_[pos_] != '\r') ++pos_;
                continue;
            }
            break;
        }
        std::string t;
        while (pos_ < b_.size() && !std::isspace(b_[pos_]) && b_[pos_] != '#') t += static_cast<char>(b_[pos_++]);
        if (t.empty()) throw std::runtime_error("truncated PNM header");
        return t;
    }
    unsigned number() {
        const std::string t = token();
        for (char c : t)
            if (!std::isdigit(static_cast<unsigned char>(c))) throw std::runtime_error("bad number '" + t + "' in PNM file");
        return static_cast<unsigned>(std::stoul(t));
    }
    void skip_single_whitespace() {  // exactly one whitespace byte ends a binary header
        if (pos_ >= b_.size() || !std::isspace(b_[pos_])) throw std::runtime_error("malformed PNM header");
        ++pos_;
    }
    unsigned binary_sample(bool wide) {
        const std::size_t need = wide ? 2 : 1;
        if (pos_ + need > b_.size()) throw std::runtime_error("PNM pixel data is truncated");
        unsigned v = b_[pos_];
        if (wide) v = (v << 8) | b_[pos_ + 1];  // big-endian
        pos_ += need;
        return v;
    }

private:
    std::vector<unsigned char> b_;
    std::size_t pos_ = 0;
};

}  // namespace detail

// P2/P5 (gray) and P3/P6 (RGB) with 8- or 16-bit samples, decoded like Pillow.
inline GrayImage read_pnm(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open image '" + path + "'");
    std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    detail::PnmReader r(std::move(bytes));
    const std::string magic = r.token();
    const bool gray = magic == "P2" || magic == "P5";
    const bool rgb = magic == "P3" || magic == "P6";
    if (!gray && !rgb) throw std::runtime_error("'" + path + "' is not a PGM/PPM (P2, P3, P5, P6) image");
    const bool plain = magic == "P2" || magic == "P3";
    GrayImage img;
    img.width = static_cast<int>(r.number());
    img.height = static_cast<int>(r.number());
    const unsigned maxval = r.number();
    if (img.width <= 0 || img.height <= 0 || maxval == 0 || maxval > 65535)
        throw std::runtime_error("'" + path + "' has a bad size or maxval");
    if (!plain) r.skip_single_whitespace();
    const bool wide = maxval > 255;
    const std::size_t n = static_cast<std::size_t>(img.width) * static_cast<std::size_t>(img.height);
    img.pixels.resize(n);
    auto sample = [&]() -> unsigned {
        const unsigned v = plain ? r.number() : r.binary_sample(wide);
        if (v > maxval) throw std::runtime_error("'" + path + "' has a sample above its maxval");
        return v;
    };
    for (std::size_t i = 0; i < n; ++i) {
        if (gray && wide) {
            // Pillow: mode "I" scaled to 0..65535, then dacovid divides by 65535
            img.pixels[i] = static_cast<float>(detail::rescale_sample(sample(), maxval, 65535)) / 65535.0f;
        } else if (gray) {
            img.pixels[i] = static_cast<float>(detail::rescale_sample(sample(), maxval, 255)) / 255.0f;
        } else {
            // Pillow keeps RGB at 8 bits per channel (16-bit samples are rescaled to 0..255)
            const unsigned red = detail::rescale_sample(sample(), maxval, 255);
            const unsigned green = detail::rescale_sample(sample(), maxval, 255);
            const unsigned blue = detail::rescale_sample(sample(), maxval, 255);
            img.pixels[i] = static_cast<float>(detail::pillow_luma(red, green, blue)) / 255.0f;
        }
    }
    return img;
}

#ifdef DACOVID_WITH_OPENCV
// PNG/JPEG/BMP/TIFF through OpenCV: 8/16-bit gray, BGR or BGRA.
inline GrayImage read_with_opencv(const std::string& path) {
    cv::Mat m = cv::imread(path, cv::IMREAD_UNCHANGED);
    if (m.empty()) throw std::runtime_error("OpenCV cannot read image '" + path + "'");
    if (m.depth() != CV_8U && m.depth() != CV_16U)
        throw std::runtime_error("'" + path + "': only 8- and 16-bit images are supported");
    GrayImage img;
    img.width = m.cols;
    img.height = m.rows;
    img.pixels.resize(static_cast<std::size_t>(m.rows) * static_cast<std::size_t>(m.cols));
    const bool wide = m.depth() == CV_16U;
    const int ch = m.channels();
    for (int y = 0; y < m.rows; ++y) {
        for (int x = 0; x < m.cols; ++x) {
            auto at = [&](int c) -> unsigned {
                return wide ? m.ptr<std::uint16_t>(y)[x * ch + c] : m.ptr<std::uint8_t>(y)[x * ch + c];
            };
            float v;
            if (ch == 1) {
                v = wide ? static_cast<float>(at(0)) / 65535.0f : static_cast<float>(at(0)) / 255.0f;
            } else {
                // Pillow reads 16-bit colour as 8-bit (high byte); OpenCV order is B, G, R(, A)
                auto eight = [&](int c) { return wide ? at(c) >> 8 : at(c); };
                unsigned b = eight(0), g = eight(1), r = eight(2);
                if (ch == 4) {  // composite over black, as the Python side does (rounding may differ by 1/255)
                    const unsigned a = eight(3);
                    r = (r * a + 127) / 255;
                    g = (g * a + 127) / 255;
                    b = (b * a + 127) / 255;
                }
                v = static_cast<float>(detail::pillow_luma(r, g, b)) / 255.0f;
            }
            img.pixels[static_cast<std::size_t>(y) * m.cols + x] = v;
        }
    }
    return img;
}
#endif

inline std::string lower_extension(const std::string& path) {
    const auto dot = path.find_last_of('.');
    std::string ext = dot == std::string::npos ? "" : path.substr(dot);
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return ext;
}

inline GrayImage read_image(const std::string& path) {
    const std::string ext = lower_extension(path);
    if (ext == ".pgm" || ext == ".ppm" || ext == ".pnm") return read_pnm(path);
#ifdef DACOVID_WITH_OPENCV
    return read_with_opencv(path);
#else
    throw std::runtime_error("'" + path + "': this build reads PGM/PPM only; rebuild with OpenCV for " + ext +
                             " files, or convert the image (e.g. with ImageMagick: convert in.png out.pgm)");
#endif
}

namespace detail {

struct Filter {
    double support;
    double (*fn)(double);
};

inline double bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

inline double bicubic(double x) {  // a = -0.5, as Pillow
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

inline Coefficients coefficients(int in_size, int out_size, const Filter& filter) {
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
inline GrayImage resize(const GrayImage& in, int out_w, int out_h, const std::string& interpolation) {
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
inline std::vector<float> preprocess(const GrayImage& image, const Preprocessing& p) {
    const int h = image.height, w = image.width, target = p.resize_size;
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

}  // namespace dacovid
