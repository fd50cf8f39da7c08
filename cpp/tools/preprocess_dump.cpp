// preprocess_dump - the network input the dacovid runtime computes for one image, to compare with Python.
//
//   preprocess_dump PREPROCESSING.json IMAGE OUT.f32
//
// PREPROCESSING.json holds a "preprocessing" object (an engine sidecar, or {"preprocessing": {...}}); OUT.f32
// receives 3 x S x S little-endian float32 (CHW). Needs no model and no runtime.
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

#include "dacovid/classifier.hpp"
#include "json_lite.hpp"

int main(int argc, char** argv) {
    if (argc != 4) {
        std::cerr << "usage: " << argv[0] << " PREPROCESSING.json IMAGE OUT.f32\n";
        return 2;
    }
    try {
        std::ifstream meta_in(argv[1], std::ios::binary);
        if (!meta_in) throw dacovid::InputError(std::string("cannot open metadata '") + argv[1] + "'");
        const std::string text((std::istreambuf_iterator<char>(meta_in)), std::istreambuf_iterator<char>());
        (void)jsonlite::parse(text)["preprocessing"];  // a valid document with the entry, or a one-line error
        const dacovid::Preprocessing spec = dacovid::preprocessing_from_json(jsonlite::object_text(text, "preprocessing"));
        const std::vector<float> chw = dacovid::preprocess(dacovid::decode_image_file(argv[2]), spec);
        std::ofstream out(argv[3], std::ios::binary);
        out.write(reinterpret_cast<const char*>(chw.data()), static_cast<std::streamsize>(chw.size() * sizeof(float)));
        if (!out) throw std::runtime_error(std::string("cannot write '") + argv[3] + "'");
    } catch (const dacovid::InputError& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
