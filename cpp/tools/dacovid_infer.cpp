// dacovid_infer - classify chest X-ray files with a dacovid-export artifact, from C++.
//
//   dacovid_infer MODEL IMAGE... [--json] [--batch N] [--threads N]
//   dacovid_infer MODEL --info                     the artifact's self-description, as JSON
//   dacovid_infer MODEL IMAGE... --time R [--batch N]   end-to-end latency of R timed passes (JSON)
//
// One line per image: "IMAGE: CLASS (p) | name p ..." (or one JSON object per line with --json); an image that
// cannot be read gives "error: ..." on stderr (with --json: {"image": ..., "error": ...}) and the others go on.
// Exit codes as the Python CLI: 0 every image classified, 2 bad input (usage, model, any image), 1 other failures.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "dacovid/classifier.hpp"

namespace {

const char* const kUsage =
    "usage: dacovid_infer MODEL IMAGE... [--json] [--batch N] [--threads N]\n"
    "       dacovid_infer MODEL --info\n"
    "       dacovid_infer MODEL IMAGE... --time REPEATS [--batch N]\n"
    "  MODEL: a dacovid-export .onnx (OpenVINO, CPU) or .engine (TensorRT, when built in)\n"
    "  --batch N    images per inference call (default: min(16, the model's max batch))\n"
    "  --threads N  worker threads sharing the compiled model, one batch each at a time (default 1)\n";

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof(buf), "\\u%04x", c);
                    out += buf;
                } else {
                    out += static_cast<char>(c);
                }
        }
    }
    return out + "\"";
}

std::string number(double v, int digits) {
    char buf[40];
    std::snprintf(buf, sizeof(buf), "%.*g", digits, v);
    return buf;
}

int positive(const std::string& flag, const char* value) {
    if (value == nullptr) throw UsageError(flag + " needs a value");
    char* end = nullptr;
    const long v = std::strtol(value, &end, 10);
    if (end == value || *end != '\0' || v < 1 || v > 1024) throw UsageError(flag + " " + value + ": give an integer from 1 to 1024");
    return static_cast<int>(v);
}

std::string info_json(const dacovid::ModelInfo& info) {
    std::string names;
    for (const auto& n : info.class_names) names += (names.empty() ? "" : ", ") + json_string(n);
    return "{\"path\": " + json_string(info.path) + ", \"kind\": " + json_string(info.kind) + ", \"runtime\": " +
           json_string(info.runtime) + ", \"precision\": " + json_string(info.precision) + ", \"source_sha256\": " +
           json_string(info.source_sha256) + ", \"class_names\": [" + names + "], \"preprocessing\": " +
           info.preprocessing_json + ", \"max_batch\": " + (info.max_batch > 0 ? std::to_string(info.max_batch) : "null") + "}";
}

std::string line_for(const dacovid::Prediction& p, const dacovid::ModelInfo& info, bool json) {
    if (json) {
        if (!p.ok) return "{\"image\": " + json_string(p.source) + ", \"error\": " + json_string(p.error) + "}";
        std::string logits, probs;
        for (std::size_t c = 0; c < p.logits.size(); ++c) {
            logits += (c ? ", " : "") + number(p.logits[c], 9);  // 9 significant digits: a float round-trips
            probs += (c ? ", " : "") + number(p.probabilities[c], 17);
        }
        return "{\"image\": " + json_string(p.source) + ", \"class\": " + json_string(p.class_name) + ", \"index\": " +
               std::to_string(p.index) + ", \"probabilities\": [" + probs + "], \"logits\": [" + logits + "]}";
    }
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.4f", p.probabilities[static_cast<std::size_t>(p.index)]);
    std::string line = p.source + ": " + p.class_name + " (" + buf + ") |";
    for (std::size_t c = 0; c < p.probabilities.size(); ++c) {
        std::snprintf(buf, sizeof(buf), "%.4f", p.probabilities[c]);
        line += " " + info.class_names[c] + " " + buf;
    }
    return line;
}

int run(int argc, char** argv) {
    std::vector<std::string> positional;
    bool json = false, show_info = false;
    int batch = 0, threads = 1, repeats = 0;
    bool options_done = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (options_done) {
            positional.push_back(a);
        } else if (a == "--") {
            options_done = true;  // what follows is files, even when a name starts with '-'
        } else if (a == "-h" || a == "--help") {
            std::cout << kUsage;
            return 0;
        } else if (a == "--json") {
            json = true;
        } else if (a == "--info") {
            show_info = true;
        } else if (a == "--batch") {
            batch = positive(a, i + 1 < argc ? argv[++i] : nullptr);
        } else if (a == "--threads") {
            threads = positive(a, i + 1 < argc ? argv[++i] : nullptr);
        } else if (a == "--time") {
            repeats = positive(a, i + 1 < argc ? argv[++i] : nullptr);
        } else if (a.size() > 1 && a[0] == '-') {
            throw UsageError("unknown option " + a);
        } else {
            positional.push_back(a);
        }
    }
    if (positional.empty()) throw UsageError("give MODEL and at least one IMAGE");
    if (positional.size() < 2 && !show_info) throw UsageError("give at least one IMAGE after MODEL");
    dacovid::Options options;
    options.batch_size = batch;
    const dacovid::Classifier model = dacovid::Classifier::open(positional[0], options);
    const dacovid::ModelInfo& info = model.info();
    if (show_info) {
        std::cout << info_json(info) << "\n";
        return 0;
    }
    const std::vector<std::string> files(positional.begin() + 1, positional.end());
    if (repeats > 0) {
        // end to end per batch: decode + preprocess + inference + softmax; the first pass is the warm-up
        const std::size_t b = static_cast<std::size_t>(batch > 0 ? batch : 1);
        std::string times;
        for (int r = -1; r < repeats; ++r) {
            for (std::size_t s = 0; s < files.size(); s += b) {
                const std::vector<std::string> part(files.begin() + static_cast<long>(s),
                                                    files.begin() + static_cast<long>(std::min(files.size(), s + b)));
                const auto t0 = std::chrono::steady_clock::now();
                const std::vector<dacovid::Prediction> got = model.predict(part);
                const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
                for (const auto& p : got)
                    if (!p.ok) throw dacovid::InputError(p.error);
                if (r >= 0 && part.size() == b) times += (times.empty() ? "" : ", ") + number(ms, 6);
            }
        }
        std::cout << "{\"bench\": {\"batch\": " << b << ", \"images\": " << files.size() << ", \"repeats\": " << repeats
                  << ", \"runtime\": " << json_string(info.runtime) << ", \"batch_ms\": [" << times << "]}}\n";
        return 0;
    }
    // batches are the unit of work: thread t takes the next batch not yet taken, results keep input order
    const std::size_t b = static_cast<std::size_t>(batch > 0 ? batch : 16);
    const std::size_t jobs = (files.size() + b - 1) / b;
    std::vector<std::vector<dacovid::Prediction>> results(jobs);
    std::vector<std::string> failures(jobs);
    std::atomic<std::size_t> next{0};
    auto worker = [&]() {
        for (std::size_t j; (j = next.fetch_add(1)) < jobs;) {
            try {
                const std::vector<std::string> part(files.begin() + static_cast<long>(j * b),
                                                    files.begin() + static_cast<long>(std::min(files.size(), (j + 1) * b)));
                results[j] = model.predict(part);
            } catch (const std::exception& e) {
                failures[j] = e.what();
            }
        }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads && static_cast<std::size_t>(t) < jobs; ++t) pool.emplace_back(worker);
    worker();
    for (auto& t : pool) t.join();
    for (const auto& f : failures)
        if (!f.empty()) throw std::runtime_error(f);
    bool bad = false;
    for (const auto& part : results) {
        for (const auto& p : part) {
            if (!p.ok) {
                bad = true;
                if (!json) {
                    std::cout.flush();
                    std::cerr << "error: " << p.error << "\n";
                    continue;
                }
            }
            std::cout << line_for(p, info, json) << "\n";
        }
    }
    return bad ? 2 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const UsageError& e) {
        std::cerr << "error: " << e.what() << " (dacovid_infer --help)\n";
        return 2;
    } catch (const dacovid::InputError& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 2;
    } catch (const std::bad_alloc&) {
        std::cerr << "error: out of memory\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
}
