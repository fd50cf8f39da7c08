// Image decoding to luminance in [0, 1], as dacovid_export.data.preprocessing.load_image + to_float_gray do it
// with Pillow: 8-bit / 255, 16-bit grey / 65535, colour through Pillow's integer luma, alpha composited over
// black, palette through the palette's colours, EXIF orientation applied to JPEGs.
#include <png.h>
#include <jpeglib.h>
#include <jerror.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sys/stat.h>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "dacovid/classifier.hpp"

namespace dacovid {
namespace {

// Pillow's RGB -> L (Convert.c, L24)
inline unsigned luma(unsigned r, unsigned g, unsigned b) { return (r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16; }

// Pillow's alpha_composite of (c, a) over opaque black (AlphaComposite.c with PRECISION_BITS 7): the
// coefficient of the source is a * 255 * 255 * 128 / (255 * 255) = a * 128, exactly.
inline unsigned over_black(unsigned c, unsigned a) {
    const unsigned tmp = c * (a << 7) + (0x80u << 7);
    return (((tmp >> 8) + tmp) >> 8) >> 7;
}

// Size guards before any pixel is decoded, worded like the Python side's.
void check_size(std::uint64_t w, std::uint64_t h, const std::string& label) {
    if (w == 0 || h == 0)
        throw InputError(label + " of " + std::to_string(w) + "x" + std::to_string(h) + " pixels is empty: nothing to classify");
    if (w * h > kMaxImagePixels)
        throw InputError(label + " is unreadable: too large to decode safely (" + std::to_string(w * h) +
                         " pixels exceeds the limit of " + std::to_string(kMaxImagePixels) + " pixels)");
    const std::uint64_t s = std::min(w, h), l = std::max(w, h);
    if (l > static_cast<std::uint64_t>(kMaxAspectRatio) * s) {
        const double ratio = static_cast<double>(l) / static_cast<double>(s);
        throw InputError(label + " is unreadable: " + std::to_string(w) + "x" + std::to_string(h) +
                         " pixels, sides in a ratio of " + std::to_string(static_cast<long long>(std::nearbyint(ratio))) +
                         ":1 (at most " + std::to_string(kMaxAspectRatio) + ":1 is read); crop it to the radiograph");
    }
}

// ------------------------------------------------------------------------------------------ PNG

struct PngJob {
    const std::uint8_t* data = nullptr;
    std::size_t size = 0;
    std::size_t pos = 0;
    std::string error;
    std::string label;
};

void png_fail(png_structp png, png_const_charp msg) {
    auto* job = static_cast<PngJob*>(png_get_error_ptr(png));
    job->error = msg ? msg : "libpng error";
    png_longjmp(png, 1);
}
void png_warn(png_structp, png_const_charp) {}  // Pillow ignores what libpng only warns about (bad CRCs of ancillary chunks aside)

void png_read_mem(png_structp png, png_bytep out, png_size_t n) {
    auto* job = static_cast<PngJob*>(png_get_io_ptr(png));
    if (job->pos + n > job->size) png_error(png, "image file is truncated");
    std::memcpy(out, job->data + job->pos, n);
    job->pos += n;
}

struct PngRaw {
    png_uint_32 width = 0, height = 0;
    int channels = 0, depth = 0;
    bool gray = false;
    std::vector<std::uint8_t> pixels;
    std::string size_error;  // set when a guard refused the header (the guard's own message)
};

// Everything that may longjmp lives here, with no C++ object that has a destructor in its frame
// except what outlives the jump (job, raw: heap/caller-owned).
bool png_decode_raw(PngJob* job, PngRaw* raw) {
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, job, png_fail, png_warn);
    if (!png) { job->error = "out of memory"; return false; }
    png_infop info = png_create_info_struct(png);
    if (!info) { png_destroy_read_struct(&png, nullptr, nullptr); job->error = "out of memory"; return false; }
    std::vector<png_bytep>* rows = new std::vector<png_bytep>();
    if (setjmp(png_jmpbuf(png))) {
        delete rows;
        png_destroy_read_struct(&png, &info, nullptr);
        return false;
    }
    png_set_read_fn(png, job, png_read_mem);
    // the size guards below are ours (the same as Python's); libpng's default 1,000,000 per side would refuse a
    // 1 x 3,000,000 strip with its own words
    png_set_user_limits(png, 0x7fffffffL, 0x7fffffffL);
    png_read_info(png, info);
    raw->width = png_get_image_width(png, info);
    raw->height = png_get_image_height(png, info);
    try {
        check_size(raw->width, raw->height, job->label);
    } catch (const InputError& e) {
        raw->size_error = e.what();
        delete rows;
        png_destroy_read_struct(&png, &info, nullptr);
        return false;
    }
    const int color = png_get_color_type(png, info);
    if (color == PNG_COLOR_TYPE_PALETTE) {
        png_set_palette_to_rgb(png);
        // Pillow: a palette image with transparency goes RGBA, then over black
        if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    }
    // grey and RGB with tRNS stay opaque, as Pillow's "L"/"RGB" with a transparency entry do in to_float_gray
    if (color == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8) png_set_expand_gray_1_2_4_to_8(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    raw->channels = png_get_channels(png, info);
    raw->depth = png_get_bit_depth(png, info);
    raw->gray = (png_get_color_type(png, info) & PNG_COLOR_MASK_COLOR) == 0;
    const std::size_t rowbytes = png_get_rowbytes(png, info);
    raw->pixels.resize(rowbytes * raw->height);
    rows->resize(raw->height);
    for (png_uint_32 y = 0; y < raw->height; ++y) (*rows)[y] = raw->pixels.data() + y * rowbytes;
    png_read_image(png, rows->data());
    png_read_end(png, nullptr);  // Pillow reads to IEND too: a file cut after the pixels is truncated there
    delete rows;
    png_destroy_read_struct(&png, &info, nullptr);
    return true;
}

GrayImage decode_png(const std::uint8_t* data, std::size_t size, const std::string& label) {
    auto job = std::make_unique<PngJob>();
    job->data = data;
    job->size = size;
    job->label = label;
    auto raw = std::make_unique<PngRaw>();
    if (!png_decode_raw(job.get(), raw.get())) {
        if (!raw->size_error.empty()) throw InputError(raw->size_error);
        throw InputError(label + " is unreadable or corrupt: " + job->error);
    }
    GrayImage img;
    img.width = static_cast<int>(raw->width);
    img.height = static_cast<int>(raw->height);
    const std::size_t n = static_cast<std::size_t>(raw->width) * raw->height;
    img.pixels.resize(n);
    const int ch = raw->channels;
    const bool wide = raw->depth == 16;
    const std::uint8_t* p = raw->pixels.data();
    // Pillow reads 16-bit grey as "I;16" (/ 65535) and every other 16-bit PNG by its high bytes ("RGB;16B", "LA;16B")
    auto high = [&](std::size_t i, int c) -> unsigned { return p[(i * ch + c) * (wide ? 2 : 1)]; };
    for (std::size_t i = 0; i < n; ++i) {
        if (raw->gray && ch == 1) {
            img.pixels[i] = wide ? static_cast<float>((p[2 * i] << 8) | p[2 * i + 1]) / 65535.0f
                                 : static_cast<float>(p[i]) / 255.0f;
        } else if (raw->gray) {  // grey + alpha
            img.pixels[i] = static_cast<float>(over_black(high(i, 0), high(i, 1))) / 255.0f;
        } else if (ch == 3) {
            img.pixels[i] = static_cast<float>(luma(high(i, 0), high(i, 1), high(i, 2))) / 255.0f;
        } else {
            const unsigned a = high(i, 3);
            img.pixels[i] = static_cast<float>(luma(over_black(high(i, 0), a), over_black(high(i, 1), a),
                                                    over_black(high(i, 2), a))) / 255.0f;
        }
    }
    return img;
}

// ------------------------------------------------------------------------------------------ JPEG

struct JpegError {
    jpeg_error_mgr mgr;
    std::jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

void jpeg_fail(j_common_ptr cinfo) {
    auto* err = reinterpret_cast<JpegError*>(cinfo->err);
    (*cinfo->err->format_message)(cinfo, err->message);
    std::longjmp(err->jump, 1);
}

// Pillow refuses a JPEG whose data ends early ("image file is truncated"); libjpeg only warns and pads with grey
void jpeg_message(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        auto* err = reinterpret_cast<JpegError*>(cinfo->err);
        std::snprintf(err->message, sizeof(err->message), "image file is truncated");
        std::longjmp(err->jump, 1);
    }
}

struct JpegRaw {
    int width = 0, height = 0, channels = 0, orientation = 1;
    std::vector<std::uint8_t> pixels;
    std::string error, size_error;
};

std::uint32_t rd(const std::uint8_t* p, bool le, int n) {
    std::uint32_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<std::uint32_t>(p[i]) << (8 * (le ? i : n - 1 - i));
    return v;
}

// EXIF orientation (tag 0x0112 of IFD0) from an APP1 "Exif\0\0" payload; 1 when absent or unreadable.
int exif_orientation(const std::uint8_t* d, std::size_t n) {
    if (n < 14 || std::memcmp(d, "Exif\0\0", 6) != 0) return 1;
    const std::uint8_t* t = d + 6;
    const std::size_t tn = n - 6;
    bool le;
    if (t[0] == 'I' && t[1] == 'I') le = true;
    else if (t[0] == 'M' && t[1] == 'M') le = false;
    else return 1;
    const std::uint32_t ifd = rd(t + 4, le, 4);
    if (ifd + 2 > tn) return 1;
    const std::uint32_t count = rd(t + ifd, le, 2);
    for (std::uint32_t k = 0; k < count; ++k) {
        const std::size_t e = ifd + 2 + 12 * static_cast<std::size_t>(k);
        if (e + 12 > tn) return 1;
        if (rd(t + e, le, 2) == 0x0112) {
            const std::uint32_t v = rd(t + e + 8, le, 2);
            return v >= 1 && v <= 8 ? static_cast<int>(v) : 1;
        }
    }
    return 1;
}

bool jpeg_decode_raw(const std::uint8_t* data, std::size_t size, const std::string& label, JpegRaw* raw) {
    jpeg_decompress_struct cinfo;
    auto* err = new JpegError();
    cinfo.err = jpeg_std_error(&err->mgr);
    err->mgr.error_exit = jpeg_fail;
    err->mgr.emit_message = jpeg_message;
    if (setjmp(err->jump)) {
        raw->error = err->message;
        jpeg_destroy_decompress(&cinfo);
        delete err;
        return false;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&cinfo, TRUE);
    try {
        check_size(cinfo.image_width, cinfo.image_height, label);
    } catch (const InputError& e) {
        raw->size_error = e.what();
        jpeg_destroy_decompress(&cinfo);
        delete err;
        return false;
    }
    for (jpeg_saved_marker_ptr m = cinfo.marker_list; m; m = m->next)
        if (m->marker == JPEG_APP0 + 1 && (raw->orientation = exif_orientation(m->data, m->data_length)) != 1) break;
    if (cinfo.jpeg_color_space == JCS_GRAYSCALE) {
        cinfo.out_color_space = JCS_GRAYSCALE;
    } else if (cinfo.jpeg_color_space == JCS_YCbCr || cinfo.jpeg_color_space == JCS_RGB) {
        cinfo.out_color_space = JCS_RGB;  // Pillow decodes to RGB, then takes its integer luma
    } else {
        std::snprintf(err->message, sizeof(err->message), "CMYK/YCCK JPEG is not read by this runtime: convert it to grey or RGB");
        std::longjmp(err->jump, 1);
    }
    jpeg_start_decompress(&cinfo);
    raw->width = static_cast<int>(cinfo.output_width);
    raw->height = static_cast<int>(cinfo.output_height);
    raw->channels = cinfo.output_components;
    const std::size_t stride = static_cast<std::size_t>(raw->width) * raw->channels;
    raw->pixels.resize(stride * raw->height);
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = raw->pixels.data() + stride * cinfo.output_scanline;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    delete err;
    return true;
}

// ImageOps.exif_transpose: orientation 2..8 -> the upright picture
GrayImage orient(GrayImage in, int o) {
    if (o == 1) return in;
    const int w = in.width, h = in.height;
    GrayImage out;
    const bool swap = o >= 5;
    out.width = swap ? h : w;
    out.height = swap ? w : h;
    out.pixels.resize(in.pixels.size());
    for (int y = 0; y < out.height; ++y) {
        for (int x = 0; x < out.width; ++x) {
            int sx = x, sy = y;
            switch (o) {
                case 2: sx = w - 1 - x; break;
                case 3: sx = w - 1 - x; sy = h - 1 - y; break;
                case 4: sy = h - 1 - y; break;
                case 5: sx = y; sy = x; break;
                case 6: sx = y; sy = h - 1 - x; break;
                case 7: sx = w - 1 - y; sy = h - 1 - x; break;
                case 8: sx = w - 1 - y; sy = x; break;
                default: break;
            }
            out.pixels[static_cast<std::size_t>(y) * out.width + x] = in.pixels[static_cast<std::size_t>(sy) * w + sx];
        }
    }
    return out;
}

GrayImage decode_jpeg(const std::uint8_t* data, std::size_t size, const std::string& label) {
    auto raw = std::make_unique<JpegRaw>();
    if (!jpeg_decode_raw(data, size, label, raw.get())) {
        if (!raw->size_error.empty()) throw InputError(raw->size_error);
        throw InputError(label + " is unreadable or corrupt: " + raw->error);
    }
    GrayImage img;
    img.width = raw->width;
    img.height = raw->height;
    const std::size_t n = static_cast<std::size_t>(raw->width) * raw->height;
    img.pixels.resize(n);
    const std::uint8_t* p = raw->pixels.data();
    for (std::size_t i = 0; i < n; ++i)
        img.pixels[i] = raw->channels == 1 ? static_cast<float>(p[i]) / 255.0f
                                           : static_cast<float>(luma(p[3 * i], p[3 * i + 1], p[3 * i + 2])) / 255.0f;
    return orient(std::move(img), raw->orientation);
}

// ------------------------------------------------------------------------------------------ PNM

// Pillow rescales a PNM sample whose maxval is not 255/65535 with Python's round (ties to even)
unsigned rescale_sample(unsigned value, unsigned maxval, unsigned out_max) {
    if (maxval == out_max) return value;
    const double scaled = std::nearbyint(static_cast<double>(value) / maxval * out_max);
    return static_cast<unsigned>(std::min<double>(scaled, out_max));
}

class PnmReader {
public:
    PnmReader(const std::uint8_t* b, std::size_t n, std::string label) : b_(b), n_(n), label_(std::move(label)) {}
    std::string token() {
        for (;;) {  // whitespace and '#' comments separate header tokens
            while (pos_ < n_ && std::isspace(b_[pos_])) ++pos_;
            if (pos_ < n_ && b_[pos_] == '#') {
                while (pos_ < n_ && b_[pos_] != '\n' && b_[pos_] != '\r') ++pos_;
                continue;
            }
            break;
        }
        std::string t;
        while (pos_ < n_ && !std::isspace(b_[pos_]) && b_[pos_] != '#' && t.size() < 32) t += static_cast<char>(b_[pos_++]);
        if (t.empty()) throw InputError(label_ + " is unreadable or corrupt: truncated PNM header");
        return t;
    }
    unsigned number() {
        const std::string t = token();
        if (t.size() > 9) throw InputError(label_ + " is unreadable or corrupt: number '" + t + "' too large in PNM file");
        for (char c : t)
            if (!std::isdigit(static_cast<unsigned char>(c)))
                throw InputError(label_ + " is unreadable or corrupt: bad number '" + t + "' in PNM file");
        return static_cast<unsigned>(std::stoul(t));
    }
    void skip_single_whitespace() {  // exactly one whitespace byte ends a binary header
        if (pos_ >= n_ || !std::isspace(b_[pos_])) throw InputError(label_ + " is unreadable or corrupt: malformed PNM header");
        ++pos_;
    }
    unsigned binary_sample(bool wide) {
        const std::size_t need = wide ? 2 : 1;
        if (pos_ + need > n_) throw InputError(label_ + " is unreadable or corrupt: image file is truncated");
        unsigned v = b_[pos_];
        if (wide) v = (v << 8) | b_[pos_ + 1];  // big-endian
        pos_ += need;
        return v;
    }

private:
    const std::uint8_t* b_;
    std::size_t n_;
    std::string label_;
    std::size_t pos_ = 0;
};

GrayImage decode_pnm(const std::uint8_t* data, std::size_t size, const std::string& label) {
    PnmReader r(data, size, label);
    const std::string magic = r.token();
    const bool gray = magic == "P2" || magic == "P5";
    const bool plain = magic == "P2" || magic == "P3";
    const unsigned width = r.number(), height = r.number();
    check_size(width, height, label);
    const unsigned maxval = r.number();
    if (maxval == 0 || maxval > 65535) throw InputError(label + " is unreadable or corrupt: PNM maxval " + std::to_string(maxval));
    if (!plain) r.skip_single_whitespace();
    const bool wide = maxval > 255;
    GrayImage img;
    img.width = static_cast<int>(width);
    img.height = static_cast<int>(height);
    const std::size_t n = static_cast<std::size_t>(width) * height;
    img.pixels.resize(n);
    auto sample = [&]() -> unsigned {
        const unsigned v = plain ? r.number() : r.binary_sample(wide);
        if (v > maxval) throw InputError(label + " is unreadable or corrupt: a sample above its maxval");
        return v;
    };
    for (std::size_t i = 0; i < n; ++i) {
        if (gray && wide) {  // Pillow: mode "I" scaled to 0..65535, then / 65535
            img.pixels[i] = static_cast<float>(rescale_sample(sample(), maxval, 65535)) / 65535.0f;
        } else if (gray) {
            img.pixels[i] = static_cast<float>(rescale_sample(sample(), maxval, 255)) / 255.0f;
        } else {  // Pillow keeps RGB at 8 bits per channel (16-bit samples rescaled to 0..255)
            const unsigned red = rescale_sample(sample(), maxval, 255);
            const unsigned green = rescale_sample(sample(), maxval, 255);
            const unsigned blue = rescale_sample(sample(), maxval, 255);
            img.pixels[i] = static_cast<float>(luma(red, green, blue)) / 255.0f;
        }
    }
    return img;
}

}  // namespace

GrayImage decode_image(const std::uint8_t* data, std::size_t size, const std::string& label) {
    if (size == 0) throw InputError(label + " is empty (0 bytes): nothing to classify");
    auto starts = [&](const char* magic, std::size_t at = 0) {
        const std::size_t m = std::strlen(magic);
        return size >= at + m && std::memcmp(data + at, magic, m) == 0;
    };
    if (starts("\x89PNG\r\n\x1a\n")) return decode_png(data, size, label);
    if (starts("\xff\xd8\xff")) return decode_jpeg(data, size, label);
    if (size >= 2 && data[0] == 'P' && (data[1] == '2' || data[1] == '3' || data[1] == '5' || data[1] == '6'))
        return decode_pnm(data, size, label);
    // DICOM is refused rather than decoded: docs/dicom.md's decoding (VOI LUT/window, MONOCHROME1, the
    // compressed transfer syntaxes through GDCM) would be a second implementation to keep bit-identical
    if (starts("DICM", 128))
        throw InputError(label + " is a DICOM file, which the C++ runtime does not decode: convert it to a 16-bit PNG "
                                 "first, or classify it with the Python side (docs/dicom.md)");
    if (starts("BM") || starts("II*") || starts("MM\x00*"))
        throw InputError(label + " is a BMP/TIFF image, which this runtime does not read: convert it to PNG");
    throw InputError(label + " is unreadable or corrupt: not a PNG, JPEG or PGM/PPM image");
}

GrayImage decode_image_file(const std::string& path) {
    const std::string label = "image '" + path + "'";
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) throw InputError(label + " does not exist or is not a file");
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) throw InputError(label + " does not exist, is not a file or is unreadable");
    const std::streamoff size = in.tellg();
    if (size < 0) throw InputError(label + " does not exist, is not a file or is unreadable");
    // an encoded X-ray is well under 1 GiB; a bigger "image" is not one we should read into memory
    if (size > (std::streamoff(1) << 30)) throw InputError(label + " is unreadable: over 1 GiB");
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
    in.seekg(0);
    if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size))
        throw InputError(label + " is unreadable: reading it failed");
    return decode_image(bytes.data(), bytes.size(), label);
}

}  // namespace dacovid
