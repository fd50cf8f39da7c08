// json_lite.hpp - a small, strict JSON reader for the artifacts' metadata (ONNX entries, engine sidecars).
//
// Header-only and dependency-free. It reads RFC 8259 JSON into a tree of
// jsonlite::Value; errors throw std::runtime_error with the byte offset.
// It is a reader only (no writer) and keeps object keys in file order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <locale>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace jsonlite {

class Value {
public:
    enum class Type { Null, Bool, Number, String, Array, Object };

    Type type() const { return type_; }
    bool is_null() const { return type_ == Type::Null; }

    bool boolean() const { expect(Type::Bool, "a boolean"); return bool_; }
    double number() const { expect(Type::Number, "a number"); return number_; }
    int integer() const {
        const double n = number();
        const int i = static_cast<int>(n);
        if (static_cast<double>(i) != n) throw std::runtime_error("JSON: expected an integer");
        return i;
    }
    const std::string& str() const { expect(Type::String, "a string"); return string_; }
    const std::vector<Value>& array() const { expect(Type::Array, "an array"); return array_; }
    const std::vector<std::pair<std::string, Value>>& object() const { expect(Type::Object, "an object"); return object_; }

    // nullptr when the key is absent
    const Value* find(const std::string& key) const {
        for (const auto& kv : object()) {
            if (kv.first == key) return &kv.second;
        }
        return nullptr;
    }
    const Value& operator[](const std::string& key) const {
        const Value* v = find(key);
        if (v == nullptr) throw std::runtime_error("JSON: missing key '" + key + "'");
        return *v;
    }

private:
    friend class Parser;
    void expect(Type t, const char* what) const {
        if (type_ != t) throw std::runtime_error(std::string("JSON: expected ") + what);
    }

    Type type_ = Type::Null;
    bool bool_ = false;
    double number_ = 0.0;
    std::string string_;
    std::vector<Value> array_;
    std::vector<std::pair<std::string, Value>> object_;
};

class Parser {
public:
    explicit Parser(const std::string& text) : s_(text) {}

    Value parse_document() {
        Value v = parse_value(0);
        skip_ws();
        if (pos_ != s_.size()) fail("trailing characters after the JSON value");
        return v;
    }

private:
    static constexpr int kMaxDepth = 256;

    [[noreturn]] void fail(const std::string& why) const {
        throw std::runtime_error("JSON parse error at byte " + std::to_string(pos_) + ": " + why);
    }
    void skip_ws() {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
    }
    char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
    void expect_char(char c) {
        if (peek() != c) fail(std::string("expected '") + c + "'");
        ++pos_;
    }
    void expect_word(const char* word) {
        for (const char* p = word; *p; ++p) {
            if (peek() != *p) fail(std::string("expected '") + word + "'");
            ++pos_;
        }
    }

    Value parse_value(int depth) {
        if (depth > kMaxDepth) fail("nesting too deep");
        skip_ws();
        Value v;
        switch (peek()) {
            case '{': parse_object(v, depth); break;
            case '[': parse_array(v, depth); break;
            case '"': v.type_ = Value::Type::String; v.string_ = parse_string(); break;
            case 't': expect_word("true"); v.type_ = Value::Type::Bool; v.bool_ = true; break;
            case 'f': expect_word("false"); v.type_ = Value::Type::Bool; v.bool_ = false; break;
            case 'n': expect_word("null"); break;
            default: v.type_ = Value::Type::Number; v.number_ = parse_number(); break;
        }
        return v;
    }

    void parse_object(Value& v, int depth) {
        v.type_ = Value::Type::Object;
        expect_char('{');
        skip_ws();
        if (peek() == '}') { ++pos_; return; }
        for (;;) {
            skip_ws();
            if (peek() != '"') fail("expected a string key");
            std::string key = parse_string();
            skip_ws();
            expect_char(':');
            v.object_.emplace_back(std::move(key), parse_value(depth + 1));
            skip_ws();
            if (peek() == ',') { ++pos_; continue; }
            expect_char('}');
            return;
        }
    }

    void parse_array(Value& v, int depth) {
        v.type_ = Value::Type::Array;
        expect_char('[');
        skip_ws();
        if (peek() == ']') { ++pos_; return; }
        for (;;) {
            v.array_.push_back(parse_value(depth + 1));
            skip_ws();
            if (peek() == ',') { ++pos_; continue; }
            expect_char(']');
            return;
        }
    }

    double parse_number() {
        const std::size_t start = pos_;
        if (peek() == '-') ++pos_;
        if (peek() == '0') {
            ++pos_;
        } else if (peek() >= '1' && peek() <= '9') {
            while (peek() >= '0' && peek() <= '9') ++pos_;
        } else {
            fail("expected a value");
        }
        if (peek() == '.') {
            ++pos_;
            if (!(peek() >= '0' && peek() <= '9')) fail("expected a digit after '.'");
            while (peek() >= '0' && peek() <= '9') ++pos_;
        }
        if (peek() == 'e' || peek() == 'E') {
            ++pos_;
            if (peek() == '+' || peek() == '-') ++pos_;
            if (!(peek() >= '0' && peek() <= '9')) fail("expected a digit in the exponent");
            while (peek() >= '0' && peek() <= '9') ++pos_;
        }
        // the classic locale: a decimal point whatever the user's locale says
        std::istringstream in(s_.substr(start, pos_ - start));
        in.imbue(std::locale::classic());
        double value = 0.0;
        in >> value;
        if (in.fail()) fail("malformed number");
        return value;
    }

    unsigned parse_hex4() {
        unsigned code = 0;
        for (int i = 0; i < 4; ++i) {
            const char c = peek();
            code <<= 4;
            if (c >= '0' && c <= '9') code |= static_cast<unsigned>(c - '0');
            else if (c >= 'a' && c <= 'f') code |= static_cast<unsigned>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') code |= static_cast<unsigned>(c - 'A' + 10);
            else fail("bad \\u escape");
            ++pos_;
        }
        return code;
    }

    static void append_utf8(std::string& out, std::uint32_t cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }

    std::string parse_string() {
        expect_char('"');
        std::string out;
        for (;;) {
            if (pos_ >= s_.size()) fail("unterminated string");
            const char c = s_[pos_++];
            if (c == '"') return out;
            if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
            if (c != '\\') { out += c; continue; }
            const char e = peek();
            ++pos_;
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    std::uint32_t cp = parse_hex4();
                    if (cp >= 0xD800 && cp <= 0xDBFF) {  // a surrogate pair encodes one code point
                        expect_char('\\');
                        expect_char('u');
                        const std::uint32_t low = parse_hex4();
                        if (low < 0xDC00 || low > 0xDFFF) fail("unpaired surrogate in \\u escape");
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                        fail("unpaired surrogate in \\u escape");
                    }
                    append_utf8(out, cp);
                    break;
                }
                default: fail("bad escape in string");
            }
        }
    }

    const std::string& s_;
    std::size_t pos_ = 0;
};

inline Value parse(const std::string& text) { return Parser(text).parse_document(); }

// The text of the first object value under "key" in a JSON document (kept verbatim, e.g. to hand the artifact's
// own "preprocessing" entry on); std::runtime_error when there is none. Strings are skipped, escapes honoured.
inline std::string object_text(const std::string& text, const std::string& key) {
    const auto at = text.find("\"" + key + "\"");
    const auto open = at == std::string::npos ? at : text.find('{', at);
    if (open == std::string::npos) throw std::runtime_error("JSON: no '" + key + "' object");
    int depth = 0;
    bool in_string = false;
    for (std::size_t i = open; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (c == '\\') ++i;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{') {
            ++depth;
        } else if (c == '}' && --depth == 0) {
            return text.substr(open, i - open + 1);
        }
    }
    throw std::runtime_error("JSON: the '" + key + "' object is unterminated");
}

}  // namespace jsonlite
