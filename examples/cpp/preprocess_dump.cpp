// preprocess_dump - write the network input the C++ example computes for one image.
//
//   preprocess_dump METADATA.json IMAGE OUT.f32
//
// METADATA.json is an engine sidecar (or any JSON with a "preprocessing"
// object); OUT.f32 receives 3 x S x S little-endian float32 values (CHW).
// Compare it with dacovid_export.data.preprocessing.preprocess to check that the C++
// service feeds the engine what the parity check fed it. Needs no TensorRT/CUDA.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

#include "json_lite.hpp"
#include "preprocess.hpp"

int main(int argc, char** argv) {
    if (argc != 4) {
        std::cerr << "usage: " << argv[0] << " METADATA.json IMAGE OUT.f32\n";
        return 2;
    }
    try {
        std::ifstream meta_in(argv[1], std::ios::binary);
        if (!meta_in) throw std::runtime_error(std::string("cannot open metadata '") + argv[1] + "'");
        const std::string text((std::istreambuf_iterator<char>(meta_in)), std::istreambuf_iterator<char>());
        const jsonlite::Value meta = jsonlite::parse(text);
        const dacovid::Preprocessing spec = dacovid::preprocessing_from_json(meta["preprocessing"]);
        const std::vector<float> chw = dacovid::preprocess(dacovid::read_image(argv[2]), spec);
        std::ofstream out(argv[3], std::ios::binary);
        out.write(reinterpret_cast<const char*>(chw.data()), static_cast<std::streamsize>(chw.size() * sizeof(float)));
        if (!out) throw std::runtime_error(std::string("cannot write '") + argv[3] + "'");
        std::cout << "3 x " << spec.image_size << " x " << spec.image_size << " float32 -> " << argv[3] << "\n";
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
