#include "diffusion/io/config.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <system_error>
#include <utility>

#include <yaml-cpp/eventhandler.h>

#include "diffusion/io/text.hpp"

namespace diffusion {

// ---------------------------------------------------------------------------------------------
// ConfigError

namespace {

constexpr const char* kCommandLine = "<command line>";

std::string format_error(const std::string& file, int line, int column,
                         const std::string& key_path, const std::string& message,
                         const std::string& override_text) {
  std::string out = file;
  if (!override_text.empty()) {
    out += " '" + override_text + "'";
  } else if (line > 0) {
    out += ":" + std::to_string(line) + ":" + std::to_string(column);
  }
  out += ": ";
  if (!key_path.empty()) out += key_path + ": ";
  return out + message;
}

}  // namespace

ConfigError::ConfigError(std::string file, int line, int column, std::string key_path,
                         std::string message, std::string override_text)
    : Error(format_error(file, line, column, key_path, message, override_text)),
      file_(std::move(file)),
      line_(line),
      column_(column),
      key_path_(std::move(key_path)),
      message_(std::move(message)),
      override_text_(std::move(override_text)) {}

// ---------------------------------------------------------------------------------------------
// Numbers and their rendering in messages

namespace {

std::string int_expectation(std::int64_t min, std::int64_t max) {
  constexpr auto lowest = std::numeric_limits<std::int64_t>::min();
  constexpr auto highest = std::numeric_limits<std::int64_t>::max();
  std::string out = "an integer";
  if (min != lowest && max != highest)
    out += " in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
  else if (min != lowest)
    out += " >= " + std::to_string(min);
  else if (max != highest)
    out += " <= " + std::to_string(max);
  return out;
}

std::string number_expectation(const Interval& range) {
  const std::string bounds = range.describe();
  return bounds.empty() ? "a number" : "a number " + bounds;
}

bool is_digits(const std::string& s, std::size_t from, std::size_t to) {
  if (from >= to) return false;
  for (std::size_t i = from; i < to; ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

std::size_t skip_sign(const std::string& s) {
  return !s.empty() && (s[0] == '+' || s[0] == '-') ? 1 : 0;
}

// YAML 1.2 core schema integer: [-+]?[0-9]+
bool looks_like_int(const std::string& s) { return is_digits(s, skip_sign(s), s.size()); }

// YAML 1.2 core schema float: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool looks_like_decimal(const std::string& s) {
  std::size_t i = skip_sign(s);
  const std::size_t mantissa_start = i;
  std::size_t digits = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i, ++digits;
  }
  if (digits == 0 || i == mantissa_start) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    return is_digits(s, i, s.size());
  }
  return i == s.size();
}

std::optional<double> parse_yaml_number(const std::string& s) {
  const std::size_t sign = skip_sign(s);
  const std::string body = s.substr(sign);
  const double negate = (sign && s[0] == '-') ? -1.0 : 1.0;
  if (body == ".inf" || body == ".Inf" || body == ".INF")
    return negate * std::numeric_limits<double>::infinity();
  if (sign == 0 && (s == ".nan" || s == ".NaN" || s == ".NAN"))
    return std::numeric_limits<double>::quiet_NaN();
  if (!looks_like_decimal(s)) return std::nullopt;
  // from_chars is locale-independent (strtod would read "1,5" in a German locale).
  double value = 0.0;
  const auto result = std::from_chars(body.data(), body.data() + body.size(), value);
  if (result.ec != std::errc() || result.ptr != body.data() + body.size()) return std::nullopt;
  return negate * value;
}

bool is_plain(const YAML::Node& n) { return n.Tag() == "?" || n.Tag().empty(); }

bool is_bool_text(const std::string& s) {
  return s == "true" || s == "True" || s == "TRUE" || s == "false" || s == "False" ||
         s == "FALSE";
}

std::string quote(const std::string& s) {
  std::string out = "\"";
  const std::size_t limit = 60;  // keep messages one readable line
  for (std::size_t i = 0; i < s.size() && i < limit; ++i) {
    const char c = s[i];
    if (c == '"' || c == '\\') out += '\\', out += c;
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else out += c;
  }
  if (s.size() > limit) out += "...";
  return out + "\"";
}

std::string describe_value(const YAML::Node& n) {
  if (!n.IsDefined() || n.IsNull()) return "null";
  if (n.IsMap()) return "a map";
  if (n.IsSequence()) return "a list";
  const std::string& s = n.Scalar();
  // Numbers and booleans print bare, everything else quoted, so `"5"` and `5` read differently.
  if (is_plain(n) && (parse_yaml_number(s) || is_bool_text(s))) return s;
  return quote(s);
}

// ---------------------------------------------------------------------------------------------
// Text encoding

// The first place where `s` is not what a YAML stream may hold: UTF-8 (no overlong forms,
// surrogates or code points above U+10FFFF) of printable characters (YAML's c-printable: tab,
// line breaks and everything from space up except DEL, the C1 controls other than NEL, U+FFFE
// and U+FFFF). yaml-cpp does not check this itself: it reads a NUL as a stray byte 0x85 and its
// emitter writes invalid bytes back as U+FFFD, so a dump would not load back to the same values.
struct BadText {
  std::size_t at;       ///< byte offset
  std::string message;  ///< what is wrong, for a ConfigError
};

// Length of the UTF-8 sequence starting at s[i] and its code point, or 0 if it is invalid.
std::size_t utf8_sequence(const std::string& s, std::size_t i, unsigned& cp) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned c = byte(i);
  std::size_t len = 0;
  unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c < 0x80) len = 1;
  else if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c == 0xE0) len = 3, lo = 0xA0;
  else if (c == 0xED) len = 3, hi = 0x9F;
  else if (c >= 0xE1 && c <= 0xEF) len = 3;
  else if (c == 0xF0) len = 4, lo = 0x90;
  else if (c == 0xF4) len = 4, hi = 0x8F;
  else if (c >= 0xF1 && c <= 0xF3) len = 4;
  if (len == 0 || i + len > s.size()) return 0;
  cp = len == 1 ? c : c & (0xFFu >> (len + 1));
  for (std::size_t k = 1; k < len; ++k) {
    const unsigned b = byte(i + k);
    if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  return len;
}

bool is_utf8(const std::string& s) {
  unsigned cp = 0;
  for (std::size_t i = 0, len = 0; i < s.size(); i += len)
    if ((len = utf8_sequence(s, i, cp)) == 0) return false;
  return true;
}

std::optional<BadText> first_bad_text(const std::string& s) {
  char hex[16];
  unsigned cp = 0;
  for (std::size_t i = 0, len = 0; i < s.size(); i += len) {
    len = utf8_sequence(s, i, cp);
    if (len == 0) {
      std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned char>(s[i]));
      return BadText{i, std::string("invalid UTF-8 (byte ") + hex + "); experiment files must be UTF-8 text"};
    }
    const bool control = (cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') || cp == 0x7F ||
                         (cp >= 0x80 && cp <= 0x9F && cp != 0x85) || cp == 0xFFFE || cp == 0xFFFF;
    if (control) {
      std::snprintf(hex, sizeof hex, "U+%04X", cp);
      return BadText{i, std::string("control character ") + hex +
                            " is not allowed in YAML text (write it as an escape in a double-quoted string)"};
    }
  }
  return std::nullopt;
}

// YAML reads CR LF and a lone CR as line breaks, but yaml-cpp keeps a CR before the end of the
// input inside a plain scalar, and its dump then loses one: `x\r\r` came back as `x\r`. Line
// breaks become LF before parsing, which keeps every line and column number.
std::string normalize_line_breaks(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\r') {
      out += s[i];
    } else {
      out += '\n';
      if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Documents

// ---------------------------------------------------------------------------------------------
// Key paths

// A key containing a dot is quoted so paths stay unambiguous ("a.\"b.c\"").
std::string child_path(const std::string& parent, const std::string& key) {
  const std::string segment =
      (key.empty() || key.find('.') != std::string::npos) ? "\"" + key + "\"" : key;
  return parent.empty() ? segment : parent + "." + segment;
}

std::string child_path(const std::string& parent, std::size_t index) {
  return child_path(parent, std::to_string(index));
}

bool path_within(const std::string& path, const std::string& prefix) {
  if (path.size() < prefix.size() || path.compare(0, prefix.size(), prefix) != 0) return false;
  return path.size() == prefix.size() || path[prefix.size()] == '.';
}

// Const lookup that never inserts (yaml-cpp's non-const operator[] would) and keeps the key.
std::optional<std::pair<YAML::Node, YAML::Node>> lookup(const YAML::Node& map,
                                                        const std::string& key) {
  if (!map.IsMap()) return std::nullopt;
  for (auto it = map.begin(); it != map.end(); ++it)
    if (it->first.IsScalar() && it->first.Scalar() == key)
      return std::make_pair(it->first, it->second);
  return std::nullopt;
}

using Thrower = std::function<void(const YAML::Mark&, const std::string& path,
                                   const std::string& message)>;

// An alias stands for its anchor's whole subtree, so a few hundred bytes of nested aliases
// expand to billions of values (the "billion laughs"), which every walk of the document (this
// one, the unknown-key check, dump) would visit. Experiment files have tens of values.
constexpr std::size_t kMaxValues = 100000;
// yaml-cpp accepts an alias inside its own anchor (`a: &a [*a]`), a cycle that recursive walks
// would follow until the stack overflows; no experiment file nests this deep.
constexpr std::size_t kMaxDepth = 1000;
// The text itself, before any tree is built: yaml-cpp spends ~250 bytes per value on its tree
// (a 60 MB list took 14 GB before the value count refused it) and, past ~500 levels of
// nesting, gives up with a bare "bad file". Experiment files are a few KB, tens of values and
// a handful of levels deep.
constexpr std::size_t kMaxTextBytes = std::size_t(1) << 20;
constexpr std::size_t kMaxTextDepth = 100;

// "60.0 MB", "1 MiB" for the limit itself.
std::string format_size(std::size_t bytes) {
  if (bytes == kMaxTextBytes) return "1 MiB";
  char buf[32];
  if (bytes >= 1000000)
    std::snprintf(buf, sizeof buf, "%.1f MB", double(bytes) / 1e6);
  else
    std::snprintf(buf, sizeof buf, "%zu bytes", bytes);
  return buf;
}

// `what_is`: "the file is 60.0 MB".
ConfigError too_large(const std::string& name, const std::string& what_is) {
  return ConfigError(name, 0, 0, "", what_is + "; an experiment file may have at most " + format_size(kMaxTextBytes) +
                                         " (they have a few KB): is this the right file?");
}

// One pass over the parser's events, which builds no tree: where each document starts, and the
// first document's values (keys not counted, as validate_tree counts them) and nesting checked
// against kMaxValues and kMaxTextDepth, so an oversized text is refused at the value that makes
// it too large. This also replaces YAML::LoadAll, which loops forever (allocating a null
// document per turn) on a token the parser cannot use, such as a stray top-level `,` (yaml-cpp
// issue 1040, fixed after 0.7): a document that starts where the previous one did means the
// parser made no progress, and is reported as invalid YAML there.
std::vector<YAML::Mark> scan_text(const std::string& text, const Thrower& fail) {
  struct Scanner : YAML::EventHandler {
    explicit Scanner(const Thrower& f) : fail(f) {}
    const Thrower& fail;
    std::vector<YAML::Mark> documents;  // where each document starts
    std::size_t values = 0;
    struct Frame {
      bool is_map;
      bool expecting_key;
      std::string key;  // the current key of a map
      std::size_t index;  // the next item of a sequence
      std::string path;
    };
    std::vector<Frame> stack;

    // A node starts: a scalar, null or alias (`key` its text, when it may be a map's key), or a
    // collection (`opens`).
    void node(const YAML::Mark& mark, const std::string& key, bool opens, bool is_map) {
      if (documents.size() > 1) return;  // only the first document is loaded
      Frame* top = stack.empty() ? nullptr : &stack.back();
      const bool is_key = top && top->is_map && top->expecting_key;
      std::string path;
      if (top && !top->is_map) path = child_path(top->path, top->index);
      if (top && top->is_map) path = is_key ? top->path : child_path(top->path, top->key);
      if (!is_key && ++values > kMaxValues)
        fail(mark, path, "more than " + std::to_string(kMaxValues) +
                             " values in the file (an experiment has tens): is this the right file?");
      if (top) {
        if (!top->is_map) ++top->index;
        else if (is_key) top->key = key, top->expecting_key = false;
        else top->expecting_key = true;
      }
      if (!opens) return;
      if (stack.size() + 1 > kMaxTextDepth)
        fail(mark, path.substr(0, path.find('.')),
             "nested more than " + std::to_string(kMaxTextDepth) + " levels deep (an experiment needs a handful)");
      stack.push_back({is_map, true, "", 0, path});
    }
    void OnDocumentStart(const YAML::Mark& mark) override {
      documents.push_back(mark);
      stack.clear();
    }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { node(mark, "", false, false); }
    void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { node(mark, "", false, false); }
    void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t, const std::string& value) override {
      node(mark, value, false, false);
    }
    void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
      node(mark, "", true, false);
    }
    void OnSequenceEnd() override {
      if (!stack.empty()) stack.pop_back();
    }
    void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
      node(mark, "", true, true);
    }
    void OnMapEnd() override {
      if (!stack.empty()) stack.pop_back();
    }
  } scanner(fail);
  std::istringstream in(text);
  YAML::Parser parser(in);
  while (parser.HandleNextDocument(scanner)) {
    const auto& m = scanner.documents;
    if (m.size() >= 2 && m[m.size() - 1].pos == m[m.size() - 2].pos) {
      const std::size_t at = static_cast<std::size_t>(m.back().pos);
      const bool printable = at < text.size() && text[at] > ' ' && text[at] < 0x7f;
      const std::string what = printable ? "'" + text.substr(at, 1) + "'" : "input";
      throw YAML::ParserException(m.back(), "unexpected " + what);
    }
  }
  return scanner.documents;
}

// Keys must be scalars and unique: yaml-cpp silently keeps both copies of a duplicate key and
// reads the first, which would make the second one a silent no-op. `values` counts the values
// visited, aliases expanded, against kMaxValues; `depth` is this node's nesting level.
void validate_tree(const YAML::Node& node, const std::string& path, bool with_lines,
                   const Thrower& fail, std::size_t& values, std::size_t depth = 0) {
  if (++values > kMaxValues)
    fail(node.Mark(), path,
         "more than " + std::to_string(kMaxValues) + " values once YAML aliases are expanded");
  if (depth > kMaxDepth)
    fail(node.Mark(), "", "nested more than " + std::to_string(kMaxDepth) +
                              " levels deep (is an alias inside its own anchor?)");
  // The text is UTF-8, but yaml-cpp decodes the escapes \N and \_ to the single bytes 0x85 and
  // 0xA0, which its emitter then writes as U+FFFD: a dump would change the value.
  if (node.IsScalar() && !is_utf8(node.Scalar()))
    fail(node.Mark(), path, "unsupported escape \\N or \\_ (write \\u0085 or \\u00A0 instead)");
  if (node.IsMap()) {
    std::map<std::string, YAML::Mark> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (!it->first.IsScalar())
        fail(it->first.Mark(), path, "expected a string key, got " + describe_value(it->first));
      if (!is_utf8(it->first.Scalar()))
        fail(it->first.Mark(), path, "unsupported escape \\N or \\_ (write \\u0085 or \\u00A0 instead)");
      const std::string& key = it->first.Scalar();
      const std::string sub = child_path(path, key);
      const auto [first, inserted] = seen.emplace(key, it->first.Mark());
      if (!inserted) {
        std::string msg = "duplicate key '" + key + "'";
        if (with_lines && !first->second.is_null())
          msg += " (first at line " + std::to_string(first->second.line + 1) + ")";
        fail(it->first.Mark(), sub, msg);
      }
      validate_tree(it->second, sub, with_lines, fail, values, depth + 1);
    }
  } else if (node.IsSequence()) {
    for (std::size_t i = 0; i < node.size(); ++i)
      validate_tree(node[i], child_path(path, i), with_lines, fail, values, depth + 1);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Interval

bool Interval::contains(double x) const {
  if (std::isnan(x)) return false;
  const bool above = lo_open ? x > lo : x >= lo;
  const bool below = hi_open ? x < hi : x <= hi;
  return above && below;
}

std::string Interval::describe() const {
  const bool has_lo = !(std::isinf(lo) && lo < 0);
  const bool has_hi = !(std::isinf(hi) && hi > 0);
  if (has_lo && has_hi)
    return std::string("in ") + (lo_open ? "(" : "[") + format_number(lo) + ", " +
           format_number(hi) + (hi_open ? ")" : "]");
  if (has_lo) return (lo_open ? "> " : ">= ") + format_number(lo);
  if (has_hi) return (hi_open ? "< " : "<= ") + format_number(hi);
  return "";
}

// ---------------------------------------------------------------------------------------------
// Shared state of one document

namespace detail {

struct ConfigState {
  std::string name;  // file name for messages
  std::string text;  // the source, so a copy of the Config can re-parse it with positions
  std::vector<std::string> overrides;

  /// A subtree set (or created) by an override: errors inside it point at the command line.
  struct OverrideRecord {
    std::string path;
    std::string text;
  };
  std::vector<OverrideRecord> records;

  /// Per map path, every key a component asked for.
  std::map<std::string, std::set<std::string>> known;

  struct Location {
    std::string file;
    int line = 0;
    int column = 0;
    std::string override_text;
  };

  Location locate(const YAML::Mark& mark, const std::string& path) const {
    // The latest override wins: it replaced whatever an earlier one set.
    for (auto r = records.rbegin(); r != records.rend(); ++r)
      if (path_within(path, r->path)) return {kCommandLine, 0, 0, r->text};
    if (mark.is_null()) return {name, 0, 0, {}};
    return {name, mark.line + 1, mark.column + 1, {}};
  }

  ConfigError error_at(const YAML::Mark& mark, const std::string& path,
                       const std::string& message) const {
    Location loc = locate(mark, path);
    return ConfigError(std::move(loc.file), loc.line, loc.column, path, message,
                       std::move(loc.override_text));
  }
};

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// ConfigNode

ConfigNode::ConfigNode(YAML::Node node, std::shared_ptr<detail::ConfigState> state,
                       std::string path, YAML::Mark key_mark)
    : node_(std::move(node)),
      state_(std::move(state)),
      path_(std::move(path)),
      key_mark_(key_mark) {}

const detail::ConfigState& ConfigNode::state() const {
  if (!state_) throw Error("use of an empty ConfigNode (default-constructed, not read from a Config)");
  return *state_;
}

void ConfigNode::record_known(const std::string& key) const {
  state();
  state_->known[path_].insert(key);
}

bool ConfigNode::is_map() const { return node_.IsMap(); }
bool ConfigNode::is_sequence() const { return node_.IsSequence(); }
bool ConfigNode::is_scalar() const { return node_.IsScalar(); }
bool ConfigNode::is_null() const { return node_.IsNull(); }

std::size_t ConfigNode::size() const {
  return (node_.IsMap() || node_.IsSequence()) ? node_.size() : 0;
}

void ConfigNode::require_map_like(const std::string& key) const {
  if (node_.IsSequence()) fail("a map with key '" + key + "'");
}

std::optional<ConfigNode> ConfigNode::child(const std::string& key) const {
  record_known(key);
  require_map_like(key);
  const auto found = lookup(node_, key);
  if (!found) return std::nullopt;
  return ConfigNode(found->second, state_, child_path(path_, key), found->first.Mark());
}

bool ConfigNode::has(const std::string& key) const { return child(key).has_value(); }

std::optional<ConfigNode> ConfigNode::find(const std::string& key) const { return child(key); }

ConfigNode ConfigNode::at(const std::string& key) const {
  if (auto c = child(key)) return *c;
  // A misspelt key (`trian:`) is the usual cause: point at it, as the unknown-key check would.
  if (node_.IsMap())
    for (auto it = node_.begin(); it != node_.end(); ++it)
      if (it->first.IsScalar() && nearest(it->first.Scalar(), {key}))
        throw state().error_at(it->first.Mark(), child_path(path_, it->first.Scalar()),
                               "unknown key '" + it->first.Scalar() + "'; did you mean '" + key +
                                   "'? (a required key)");
  error("missing required key '" + key + "'");
}

std::vector<std::string> ConfigNode::keys() const {
  state();
  if (node_.IsSequence()) fail("a map");
  std::vector<std::string> out;
  if (!node_.IsMap()) return out;
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    out.push_back(it->first.Scalar());
    record_known(out.back());
  }
  return out;
}

std::string ConfigNode::type() const {
  if (node_.IsScalar()) {
    record_known("type");  // the shorthand stands for {type: <scalar>}
    return node_.Scalar();
  }
  if (node_.IsSequence()) fail("a map with a 'type' key, or a component name");
  return at("type").as_string();
}

ConfigNode ConfigNode::item(std::size_t index) const {
  state();
  if (!node_.IsSequence()) fail("a list");
  if (index >= node_.size())
    error("item " + std::to_string(index) + " is out of range (the list has " +
          std::to_string(node_.size()) + " items)");
  const YAML::Node element = node_[index];
  return ConfigNode(element, state_, child_path(path_, index), element.Mark());
}

std::vector<ConfigNode> ConfigNode::items() const {
  state();
  if (!node_.IsSequence()) fail("a list");
  std::vector<ConfigNode> out;
  out.reserve(node_.size());
  for (std::size_t i = 0; i < node_.size(); ++i) out.push_back(item(i));
  return out;
}

std::int64_t ConfigNode::as_int(std::int64_t min, std::int64_t max) const {
  const std::string expected = int_expectation(min, max);
  if (!node_.IsScalar() || !is_plain(node_)) fail(expected);
  const std::string& s = node_.Scalar();
  std::int64_t value = 0;
  if (looks_like_int(s)) {
    const std::size_t start = s[0] == '+' ? 1 : 0;
    const auto r = std::from_chars(s.data() + start, s.data() + s.size(), value);
    if (r.ec != std::errc()) fail(expected);  // beyond int64
  } else {
    // `1e5` and `2.0` are integers written as floats; `2.5` and `.inf` are not.
    const auto x = parse_yaml_number(s);
    constexpr double limit = 9223372036854775808.0;  // 2^63
    if (!x || !std::isfinite(*x) || *x != std::floor(*x) || *x < -limit || *x >= limit)
      fail(expected);
    value = static_cast<std::int64_t>(*x);
  }
  if (value < min || value > max) fail(expected);
  return value;
}

double ConfigNode::as_double(double min, double max) const {
  return as_double(Interval::closed(min, max));
}

double ConfigNode::as_double(const Interval& range) const {
  const std::string expected = number_expectation(range);
  if (!node_.IsScalar() || !is_plain(node_)) fail(expected);
  const auto x = parse_yaml_number(node_.Scalar());
  if (x && std::isinf(*x) && !range.contains(*x)) fail("a finite number" + expected.substr(std::string("a number").size()));
  if (!x || !range.contains(*x)) fail(expected);
  return *x;
}

std::string ConfigNode::as_string() const {
  state();
  if (!node_.IsScalar()) fail("a string");
  return node_.Scalar();
}

bool ConfigNode::as_bool() const {
  if (!node_.IsScalar() || !is_plain(node_)) fail("true or false");
  const std::string& s = node_.Scalar();
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  fail("true or false");
}

std::int64_t ConfigNode::get_int(const std::string& key, std::int64_t def, std::int64_t min,
                                 std::int64_t max) const {
  if (auto c = child(key)) return c->as_int(min, max);
  return def;
}

std::int64_t ConfigNode::get_int(const std::string& key) const { return at(key).as_int(); }

std::int64_t ConfigNode::require_int(const std::string& key, std::int64_t min,
                                     std::int64_t max) const {
  return at(key).as_int(min, max);
}

double ConfigNode::get_double(const std::string& key, double def, double min, double max) const {
  return get_double(key, def, Interval::closed(min, max));
}

double ConfigNode::get_double(const std::string& key, double def, const Interval& range) const {
  if (auto c = child(key)) return c->as_double(range);
  return def;
}

double ConfigNode::get_double(const std::string& key) const { return at(key).as_double(); }

double ConfigNode::require_double(const std::string& key, const Interval& range) const {
  return at(key).as_double(range);
}

std::string ConfigNode::get_string(const std::string& key, const std::string& def) const {
  if (auto c = child(key)) return c->as_string();
  return def;
}

std::string ConfigNode::get_string(const std::string& key) const { return at(key).as_string(); }

namespace {
std::string choice_of(const ConfigNode& node, const std::vector<std::string>& allowed) {
  std::vector<std::string> quoted;
  for (const auto& a : allowed) quoted.push_back("'" + a + "'");
  const std::string expected = "one of " + join(quoted, ", ");
  if (!node.is_scalar()) node.fail(expected);
  const std::string value = node.as_string();
  for (const auto& a : allowed)
    if (a == value) return value;
  std::string msg = "expected " + expected + ", got " + node.describe();
  if (const auto near = nearest(value, allowed)) msg += "; did you mean '" + *near + "'?";
  node.error(msg);
}
}  // namespace

std::string ConfigNode::get_choice(const std::string& key, const std::string& def,
                                   const std::vector<std::string>& allowed) const {
  if (auto c = child(key)) return choice_of(*c, allowed);
  return def;
}

std::string ConfigNode::get_choice(const std::string& key,
                                   const std::vector<std::string>& allowed) const {
  return choice_of(at(key), allowed);
}

bool ConfigNode::get_bool(const std::string& key, bool def) const {
  if (auto c = child(key)) return c->as_bool();
  return def;
}

bool ConfigNode::get_bool(const std::string& key) const { return at(key).as_bool(); }

std::vector<std::int64_t> ConfigNode::get_int_list(const std::string& key,
                                                   const std::vector<std::int64_t>& def,
                                                   std::int64_t min, std::int64_t max) const {
  const auto c = child(key);
  if (!c) return def;
  if (!c->is_sequence()) c->fail("a list of integers");
  std::vector<std::int64_t> out;
  for (const ConfigNode& item : c->items()) out.push_back(item.as_int(min, max));
  return out;
}

std::vector<std::int64_t> ConfigNode::get_int_list(const std::string& key) const {
  at(key);  // raises "missing required key" first
  return get_int_list(key, {});
}

std::vector<double> ConfigNode::get_double_list(const std::string& key,
                                                const std::vector<double>& def, double min,
                                                double max) const {
  const auto c = child(key);
  if (!c) return def;
  if (!c->is_sequence()) c->fail("a list of numbers");
  std::vector<double> out;
  for (const ConfigNode& item : c->items()) out.push_back(item.as_double(min, max));
  return out;
}

std::vector<double> ConfigNode::get_double_list(const std::string& key) const {
  at(key);
  return get_double_list(key, {});
}

std::vector<std::string> ConfigNode::get_string_list(const std::string& key,
                                                     const std::vector<std::string>& def) const {
  const auto c = child(key);
  if (!c) return def;
  if (c->is_scalar()) return {c->as_string()};
  if (!c->is_sequence()) c->fail("a list of strings");
  std::vector<std::string> out;
  for (const ConfigNode& item : c->items()) out.push_back(item.as_string());
  return out;
}

std::vector<std::string> ConfigNode::get_string_list(const std::string& key) const {
  at(key);
  return get_string_list(key, {});
}

const std::string& ConfigNode::path() const { return path_; }
const std::string& ConfigNode::file() const { return state().name; }

YAML::Mark ConfigNode::mark() const {
  // A null value's own mark is wherever the parser went next (often the following line), so
  // the key's position is the better place to point at.
  if ((node_.IsNull() || node_.Mark().is_null()) && !key_mark_.is_null()) return key_mark_;
  return node_.Mark();
}

int ConfigNode::line() const { return state().locate(mark(), path_).line; }
int ConfigNode::column() const { return state().locate(mark(), path_).column; }

std::string ConfigNode::location() const {
  const auto loc = state().locate(mark(), path_);
  if (!loc.override_text.empty()) return loc.file + " '" + loc.override_text + "'";
  if (loc.line > 0) return loc.file + ":" + std::to_string(loc.line) + ":" + std::to_string(loc.column);
  return loc.file;
}

std::string ConfigNode::describe() const { return describe_value(node_); }

ConfigError ConfigNode::make_error(const std::string& message) const {
  return state().error_at(mark(), path_, message);
}

void ConfigNode::fail(const std::string& expected) const {
  throw make_error("expected " + expected + ", got " + describe());
}

void ConfigNode::error(const std::string& message) const { throw make_error(message); }

namespace {

void check_subtree(const detail::ConfigState& st, const YAML::Node& node, const std::string& path,
                   const YAML::Mark& key_mark, bool force) {
  const auto rec = st.known.find(path);
  const bool read = rec != st.known.end();
  if (node.IsMap()) {
    if (force || read) {
      static const std::set<std::string> none;
      const std::set<std::string>& known = read ? rec->second : none;
      for (auto it = node.begin(); it != node.end(); ++it) {
        const std::string& key = it->first.Scalar();
        if (known.count(key)) continue;
        const std::vector<std::string> names(known.begin(), known.end());
        std::string msg = "unknown key '" + key + "'";
        if (const auto near = nearest(key, names))
          msg += "; did you mean '" + *near + "'?";
        else if (names.empty())
          msg += " (no keys are read here)";
        else
          msg += " (known keys: " + join(names, ", ") + ")";
        throw st.error_at(it->first.Mark(), child_path(path, key), msg);
      }
    }
    for (auto it = node.begin(); it != node.end(); ++it)
      check_subtree(st, it->second, child_path(path, it->first.Scalar()), it->first.Mark(), false);
  } else if (node.IsSequence()) {
    for (std::size_t i = 0; i < node.size(); ++i) {
      const YAML::Node element = node[i];
      check_subtree(st, element, child_path(path, i), element.Mark(), false);
    }
  } else if (node.IsScalar() && read && !rec->second.empty() && !rec->second.count("type")) {
    // Keys were read from a scalar, which is only meaningful as the `sampler: ddim` shorthand.
    throw st.error_at(node.Mark().is_null() ? key_mark : node.Mark(), path,
                      "expected a map, got " + describe_value(node));
  }
}

}  // namespace

void ConfigNode::check_no_unknown_keys() const {
  check_subtree(state(), node_, path_, key_mark_, true);
}

const YAML::Node& ConfigNode::yaml() const { return node_; }

// ---------------------------------------------------------------------------------------------
// Config

Config Config::load_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw ConfigError(path, 0, 0, "", "cannot read: is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path, 0, 0, "", std::string("cannot open: ") + std::strerror(errno));
  // At most one byte past the limit is read: a huge file (or an endless pipe) is refused, not
  // loaded into memory first.
  std::string text(kMaxTextBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) throw ConfigError(path, 0, 0, "", "cannot read");
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (text.size() > kMaxTextBytes) {
    const auto size = std::filesystem::file_size(path, ec);
    const std::string how_big =
        ec ? "more than " + format_size(kMaxTextBytes) : format_size(static_cast<std::size_t>(size));
    throw too_large(path, "the file is " + how_big);
  }
  return load_string(text, path);
}

Config Config::load_string(const std::string& source, const std::string& name) {
  if (source.size() > kMaxTextBytes)
    throw too_large(name, "the text is " + format_size(source.size()));
  const std::string text = normalize_line_breaks(source);
  Config cfg;
  cfg.state_ = std::make_shared<detail::ConfigState>();
  cfg.state_->name = name;
  cfg.state_->text = text;
  const detail::ConfigState& st = *cfg.state_;

  if (const auto bad = first_bad_text(text)) {
    const std::size_t newline = bad->at == 0 ? std::string::npos : text.rfind('\n', bad->at - 1);
    const std::size_t line_begin = newline == std::string::npos ? 0 : newline + 1;
    const int line = 1 + static_cast<int>(std::count(text.begin(), text.begin() + bad->at, '\n'));
    const int column = 1 + static_cast<int>(bad->at - line_begin);
    throw ConfigError(name, line, column, "", bad->message);
  }
  YAML::Node root;
  std::vector<YAML::Mark> documents;
  try {
    // Sizes first, on the parser's events: YAML::Load builds the whole tree.
    documents = scan_text(text, [&st](const YAML::Mark& mark, const std::string& path, const std::string& msg) {
      throw st.error_at(mark, path, msg);
    });
    root = YAML::Load(text);  // the first document
  } catch (const YAML::Exception& e) {
    const bool known = !e.mark.is_null();
    throw ConfigError(name, known ? e.mark.line + 1 : 0, known ? e.mark.column + 1 : 0, "",
                      "invalid YAML: " + e.msg);
  }
  if (documents.size() > 1)
    throw st.error_at(documents[1], "",
                      "expected one YAML document, found " + std::to_string(documents.size()));
  if (!root.IsDefined() || root.IsNull()) {
    // A real (not lazily created) map, so overrides can insert into it.
    root = YAML::Node(YAML::NodeType::Map);
  } else if (!root.IsMap()) {
    throw st.error_at(root.Mark(), "",
                      "expected a map at the top level, got " + describe_value(root));
  }
  std::size_t values = 0;
  validate_tree(
      root, "", true,
      [&st](const YAML::Mark& mark, const std::string& path, const std::string& msg) {
        throw st.error_at(mark, path, msg);
      },
      values);
  cfg.root_ = root;
  return cfg;
}

Config::Config(const Config& other) {
  if (!other.state_) return;
  // Re-parse instead of YAML::Clone, which drops positions; the overrides were valid once.
  *this = load_string(other.state_->text, other.state_->name);
  apply_overrides(other.state_->overrides);
}

Config& Config::operator=(const Config& other) {
  if (this != &other) {
    Config copy(other);
    *this = std::move(copy);
  }
  return *this;
}

Config::~Config() = default;

namespace {

std::vector<std::string> split_key_path(const std::string& key) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = key.find('.', start);
    out.push_back(key.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return out;
}

}  // namespace

void Config::apply_override(const std::string& given) {
  if (!state_) throw Error("apply_override on an empty Config");
  const std::string assignment = normalize_line_breaks(given);
  auto fail = [&assignment](const std::string& path, const std::string& message) {
    throw ConfigError(kCommandLine, 0, 0, path, message, assignment);
  };
  if (const auto bad = first_bad_text(assignment)) fail("", bad->message);
  const std::size_t eq = assignment.find('=');
  if (eq == std::string::npos) fail("", "expected key.path=value");
  const std::string key = assignment.substr(0, eq);
  const std::vector<std::string> segments = split_key_path(key);
  for (const auto& s : segments)
    if (s.empty()) fail("", "expected key.path=value, got an empty key in '" + key + "'");

  std::string full_path;
  for (const auto& s : segments) full_path = child_path(full_path, s);

  YAML::Node value;
  try {
    const std::string text = assignment.substr(eq + 1);
    scan_text(text, [&](const YAML::Mark&, const std::string& path, const std::string& msg) {
      fail(path.empty() ? full_path : full_path + "." + path, msg);
    });
    value = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    fail(full_path, "invalid YAML value: " + e.msg);
  }
  std::size_t values = 0;
  validate_tree(
      value, full_path, false,
      [&](const YAML::Mark&, const std::string& path, const std::string& msg) { fail(path, msg); },
      values);

  // Walk with non-const access (which inserts), rebinding with reset(): assigning a Node to a
  // Node would overwrite the referenced value instead of moving the cursor.
  YAML::Node cursor = root_;
  std::string path;
  std::vector<std::string> created;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const std::string& seg = segments[i];
    const bool last = i + 1 == segments.size();
    const std::string next_path = child_path(path, seg);
    YAML::Node next;
    if (cursor.IsSequence()) {
      const std::size_t n = cursor.size();
      std::size_t index = 0;
      const auto r = std::from_chars(seg.data(), seg.data() + seg.size(), index);
      if (r.ec != std::errc() || r.ptr != seg.data() + seg.size() || index >= n)
        fail(path, n == 0 ? "cannot set item '" + seg + "' of an empty list"
                          : "expected a list index in [0, " + std::to_string(n - 1) +
                                "], got '" + seg + "'");
      next.reset(cursor[index]);
    } else if (cursor.IsMap() || cursor.IsNull() || !cursor.IsDefined()) {
      // (undefined: a map this override has just created one level up)
      const YAML::Node& view = cursor;
      if (!lookup(view, seg)) created.push_back(next_path);
      next.reset(cursor[seg]);
    } else {
      fail(path, "cannot set '" + seg + "' inside " + describe_value(cursor));
    }
    if (last) {
      next = value;  // assigns through the reference: the document's node takes the value
    } else {
      cursor.reset(next);
    }
    path = next_path;
  }

  for (const auto& p : created) state_->records.push_back({p, assignment});
  state_->records.push_back({full_path, assignment});
  state_->overrides.push_back(assignment);
}

void Config::apply_overrides(const std::vector<std::string>& assignments) {
  for (const auto& a : assignments) apply_override(a);
}

namespace {

// Keys longer than this are emitted as explicit keys (`? key`): well inside YAML's
// 1024-character limit on implicit keys even when escaping doubles a key's length and a tag is
// added. yaml-cpp writes explicit keys correctly only in block style, so a document with one is
// dumped all in block style.
constexpr std::size_t kMaxImplicitKeyChars = 256;

bool needs_explicit_key(const YAML::Node& key) {
  return !key.IsScalar() || key.Scalar().size() > kMaxImplicitKeyChars;
}

bool has_explicit_key(const YAML::Node& node) {
  if (node.IsMap())
    for (auto it = node.begin(); it != node.end(); ++it)
      if (needs_explicit_key(it->first) || has_explicit_key(it->second)) return true;
  if (node.IsSequence())
    for (std::size_t i = 0; i < node.size(); ++i)
      if (has_explicit_key(node[i])) return true;
  return false;
}

// Our own walk instead of `emitter << node`: yaml-cpp forgets that a scalar was quoted, so
// `name: "007"` would come back as the number 7 when the dump is loaded again.
void emit(YAML::Emitter& out, const YAML::Node& node, bool block_only) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      if (node.Style() == YAML::EmitterStyle::Flow && !block_only) out << YAML::Flow;
      out << YAML::BeginMap;
      for (auto it = node.begin(); it != node.end(); ++it) {
        if (needs_explicit_key(it->first)) out << YAML::LongKey;
        out << YAML::Key;
        emit(out, it->first, block_only);
        out << YAML::Value;
        emit(out, it->second, block_only);
      }
      out << YAML::EndMap;
      break;
    case YAML::NodeType::Sequence:
      if (node.Style() == YAML::EmitterStyle::Flow && !block_only) out << YAML::Flow;
      out << YAML::BeginSeq;
      for (std::size_t i = 0; i < node.size(); ++i) emit(out, node[i], block_only);
      out << YAML::EndSeq;
      break;
    case YAML::NodeType::Scalar:
      if (is_plain(node))
        out << node.Scalar();
      else if (node.Tag() == "!")
        out << YAML::DoubleQuoted << node.Scalar();
      else
        out << YAML::VerbatimTag(node.Tag()) << node.Scalar();
      break;
    default:
      out << YAML::Null;
  }
}

}  // namespace

std::string Config::dump() const {
  if (!state_) return "{}\n";
  YAML::Emitter out;
  emit(out, root_, has_explicit_key(root_));
  std::string text = out.c_str();
  if (text.empty() || text.back() != '\n') text += '\n';
  return text;
}

ConfigNode Config::root() const {
  if (!state_) throw Error("root() of an empty Config");
  return ConfigNode(root_, state_, "", root_.Mark());
}

const std::string& Config::name() const {
  if (!state_) throw Error("name() of an empty Config");
  return state_->name;
}

const std::vector<std::string>& Config::overrides() const {
  if (!state_) throw Error("overrides() of an empty Config");
  return state_->overrides;
}

}  // namespace diffusion
