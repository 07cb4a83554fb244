#pragma once
// Experiment configuration: YAML documents whose every value remembers where it came from.
//
//   Config cfg = Config::load_file("experiments/ddim_moons.yaml");
//   cfg.apply_override("train.steps=100");             // from the command line
//   ConfigNode train = cfg.root().at("train");
//   int64_t steps = train.get_int("steps", 1000, 1);   // default 1000, must be >= 1
//   double lr = train.at("optimizer").get_double("lr", 1e-3, Interval::greater_than(0));
//   ...build every component...
//   cfg.root().check_no_unknown_keys();                // typos anywhere become errors
//
// Errors are one line, `file:line:col: key.path: what was expected, got what`, or for a value
// set on the command line `<command line> 'train.steps=-5': train.steps: ...`.
//
// Unknown keys are found by access tracking: every key a component asks for (present or not,
// including through a getter with a default) is recorded as known for its map, so a
// component never lists its keys twice. check_no_unknown_keys() then rejects any key in the
// document that nobody asked for, suggesting the nearest known one.
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

/// A configuration error located in a file (line and column 1-based, 0 when unknown) or in a
/// command-line override; what() is the complete one-line message.
class ConfigError : public Error {
 public:
  /// `file` is "<command line>" when `override_text` (e.g. "train.steps=-5") is not empty.
  ConfigError(std::string file, int line, int column, std::string key_path, std::string message,
              std::string override_text = {});
  /// The file name as given to Config, or "<command line>".
  const std::string& file() const noexcept { return file_; }
  /// 1-based line; 0 when the position is unknown or the value came from the command line.
  int line() const noexcept { return line_; }
  /// 1-based column; 0 when unknown.
  int column() const noexcept { return column_; }
  /// Dotted path of the offending key ("train.optimizer.lr", "network.hidden.1"); may be empty.
  const std::string& key_path() const noexcept { return key_path_; }
  /// The message without location and path ("expected an integer >= 1, got -5").
  const std::string& message() const noexcept { return message_; }
  /// The override that set the offending value, or empty if it came from the file.
  const std::string& override_text() const noexcept { return override_text_; }

 private:
  std::string file_;
  int line_;
  int column_;
  std::string key_path_;
  std::string message_;
  std::string override_text_;
};

/// A set of allowed numbers, each bound inclusive unless marked open; the default is all
/// numbers. Build with the named constructors or as an aggregate {lo, hi, lo_open, hi_open}.
struct Interval {
  // A side at infinity is open unless a range says otherwise (closed(0, inf)): a `.inf` in a
  // config is almost always a mistake (a learning rate of .inf), so it is accepted only where a
  // key gives it a meaning (EDM's s_tmax).
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  bool lo_open = true;
  bool hi_open = true;

  /// [lo, hi]
  static Interval closed(double lo, double hi) { return {lo, hi, false, false}; }
  /// (lo, hi)
  static Interval open(double lo, double hi) { return {lo, hi, true, true}; }
  /// [lo, hi): e.g. an EMA decay in [0, 1).
  static Interval half_open(double lo, double hi) { return {lo, hi, false, true}; }
  /// [lo, inf): finite numbers >= lo.
  static Interval at_least(double lo) { return {lo, std::numeric_limits<double>::infinity(), false, true}; }
  /// (lo, inf): e.g. a learning rate > 0.
  static Interval greater_than(double lo) { return {lo, std::numeric_limits<double>::infinity(), true, true}; }
  /// (-inf, hi]
  static Interval at_most(double hi) { return {-std::numeric_limits<double>::infinity(), hi, true, false}; }
  /// (-inf, hi)
  static Interval less_than(double hi) { return {-std::numeric_limits<double>::infinity(), hi, true, true}; }

  /// Whether x lies inside; NaN never does.
  bool contains(double x) const;
  /// For messages: "" (everything), ">= 0", "> 0", "<= 1", "in [0, 1)".
  std::string describe() const;
};

namespace detail {
struct ConfigState;
}

/// A read-only view of one node of a Config: the YAML value, where it is (file, line, column
/// or the override that set it) and its key path. Cheap to copy; copies of the same node share
/// the record of which keys were asked for. Reading never modifies the document.
///
/// A null node (`dataset:` with nothing after it) reads as an empty map. A non-null scalar
/// also reads as an empty map whose type() is the scalar itself, so `sampler: ddim` is
/// shorthand for `sampler: {type: ddim}`; check_no_unknown_keys() rejects a scalar that was
/// read as a map without type() being asked.
class ConfigNode {
 public:
  /// An empty view; every operation on it throws Error. Only useful as a placeholder member.
  ConfigNode() = default;

  // ---- structure ----
  /// True for a YAML map (not for null).
  bool is_map() const;
  /// True for a YAML sequence (list).
  bool is_sequence() const;
  /// True for a non-null scalar (number, string, bool).
  bool is_scalar() const;
  /// True for an explicit or empty null (`~`, `null`, nothing).
  bool is_null() const;
  /// Number of entries of a map or items of a sequence; 0 for scalars and null.
  std::size_t size() const;

  // ---- maps ----
  /// Whether the map has `key` (a null value counts as present). Records `key` as known.
  bool has(const std::string& key) const;
  /// The required child `key`; missing -> error at this node: "missing required key 'key'".
  ConfigNode at(const std::string& key) const;
  /// The child `key` if present. Records `key` as known.
  std::optional<ConfigNode> find(const std::string& key) const;
  /// The keys of a map in document order; all of them count as known (the caller takes
  /// responsibility for them, e.g. a map of named samplers). Empty for null.
  std::vector<std::string> keys() const;
  /// The component name: the required string key `type`, or the scalar itself for shorthand.
  std::string type() const;

  // ---- sequences ----
  /// Item `index` of a sequence (path "a.b.3"); out of range -> error at this node.
  ConfigNode item(std::size_t index) const;
  /// All items of a sequence; a non-sequence fails with "expected a list".
  std::vector<ConfigNode> items() const;

  // ---- this node's own value ----
  /// This scalar as an integer in [min, max]. Accepts `30000`, and number literals with an
  /// exactly integral value (`1e5`, `2.0`); rejects `2.5`, `"5"` (quoted: a string), `many`.
  std::int64_t as_int(std::int64_t min = std::numeric_limits<std::int64_t>::min(),
                      std::int64_t max = std::numeric_limits<std::int64_t>::max()) const;
  /// This scalar as a number in [min, max]: YAML 1.2 literals `1e-4`, `1.0e-4`, `3`, `.inf`.
  double as_double(double min = -std::numeric_limits<double>::infinity(),
                   double max = std::numeric_limits<double>::infinity()) const;
  /// This scalar as a number inside `range`.
  double as_double(const Interval& range) const;
  /// This scalar's text (plain or quoted); maps, lists and null are rejected.
  std::string as_string() const;
  /// `true`/`false` (also `True`, `TRUE`, ...); anything else is rejected.
  bool as_bool() const;

  // ---- typed getters of a child; each records `key` as known ----
  /// Optional integer child in [min, max], `def` if absent (the default is not range-checked).
  std::int64_t get_int(const std::string& key, std::int64_t def,
                       std::int64_t min = std::numeric_limits<std::int64_t>::min(),
                       std::int64_t max = std::numeric_limits<std::int64_t>::max()) const;
  /// Required integer child.
  std::int64_t get_int(const std::string& key) const;
  /// Required integer child in [min, max].
  std::int64_t require_int(const std::string& key, std::int64_t min,
                           std::int64_t max = std::numeric_limits<std::int64_t>::max()) const;
  /// Optional number child in [min, max], `def` if absent.
  double get_double(const std::string& key, double def,
                    double min = -std::numeric_limits<double>::infinity(),
                    double max = std::numeric_limits<double>::infinity()) const;
  /// Optional number child inside `range` (for open bounds: lr > 0), `def` if absent.
  double get_double(const std::string& key, double def, const Interval& range) const;
  /// Required number child.
  double get_double(const std::string& key) const;
  /// Required number child inside `range`.
  double require_double(const std::string& key, const Interval& range) const;
  /// Optional string child, `def` if absent.
  std::string get_string(const std::string& key, const std::string& def) const;
  /// Required string child.
  std::string get_string(const std::string& key) const;
  /// Optional string child that must be one of `allowed`; the error lists them and the
  /// nearest. `def` if absent.
  std::string get_choice(const std::string& key, const std::string& def,
                         const std::vector<std::string>& allowed) const;
  /// Required string child that must be one of `allowed`.
  std::string get_choice(const std::string& key, const std::vector<std::string>& allowed) const;
  /// Optional boolean child, `def` if absent.
  bool get_bool(const std::string& key, bool def) const;
  /// Required boolean child.
  bool get_bool(const std::string& key) const;
  /// Optional list of integers, each in [min, max]; `def` if absent.
  std::vector<std::int64_t> get_int_list(
      const std::string& key, const std::vector<std::int64_t>& def,
      std::int64_t min = std::numeric_limits<std::int64_t>::min(),
      std::int64_t max = std::numeric_limits<std::int64_t>::max()) const;
  /// Required list of integers.
  std::vector<std::int64_t> get_int_list(const std::string& key) const;
  /// Optional list of numbers, each in [min, max]; `def` if absent.
  std::vector<double> get_double_list(const std::string& key, const std::vector<double>& def,
                                      double min = -std::numeric_limits<double>::infinity(),
                                      double max = std::numeric_limits<double>::infinity()) const;
  /// Required list of numbers.
  std::vector<double> get_double_list(const std::string& key) const;
  /// Optional list of strings; a single scalar reads as a one-element list (`metrics: w2`).
  std::vector<std::string> get_string_list(const std::string& key,
                                           const std::vector<std::string>& def) const;
  /// Required list of strings (a single scalar reads as a one-element list).
  std::vector<std::string> get_string_list(const std::string& key) const;

  // ---- positions and errors ----
  /// Dotted key path from the root ("" for the root; list items by index: "network.hidden.1").
  const std::string& path() const;
  /// The file name the document was loaded from.
  const std::string& file() const;
  /// 1-based line of this value in the file (0 if unknown or set on the command line).
  int line() const;
  /// 1-based column (0 if unknown or set on the command line).
  int column() const;
  /// "file:line:col", or "<command line> 'key=value'" for overridden values.
  std::string location() const;
  /// A short rendering of the value for messages: `-5`, `"many"`, `a map`, `a list`, `null`.
  std::string describe() const;
  /// Raise "path: expected <expected>, got <this value>" at this node.
  [[noreturn]] void fail(const std::string& expected) const;
  /// Raise "path: <message>" at this node.
  [[noreturn]] void error(const std::string& message) const;
  /// Throw for the first key (in document order) that is present but was never asked for,
  /// here and in every map below that was read from; suggests the nearest known key.
  /// Registry::create calls this after each factory; runexp calls it on the root at the end.
  void check_no_unknown_keys() const;

  /// The underlying yaml-cpp node, for the rare reader that needs it; read it only as const
  /// (yaml-cpp's non-const operator[] inserts missing keys).
  const YAML::Node& yaml() const;

 private:
  friend class Config;
  ConfigNode(YAML::Node node, std::shared_ptr<detail::ConfigState> state, std::string path,
             YAML::Mark key_mark);
  const detail::ConfigState& state() const;
  void record_known(const std::string& key) const;
  std::optional<ConfigNode> child(const std::string& key) const;
  void require_map_like(const std::string& key) const;
  YAML::Mark mark() const;
  ConfigError make_error(const std::string& message) const;

  YAML::Node node_;
  std::shared_ptr<detail::ConfigState> state_;
  std::string path_;
  YAML::Mark key_mark_ = YAML::Mark::null_mark();  // where the key of this value is; nulls have no own position
};

/// A loaded experiment document plus the command-line overrides applied to it. Copying a
/// Config gives an independent document (re-parsed, so positions survive): overriding the
/// copy leaves the original untouched.
class Config {
 public:
  /// Parse a YAML file; malformed YAML, duplicate keys, several documents or a top level that
  /// is not a map raise ConfigError with file:line:col. An empty file is an empty map.
  static Config load_file(const std::string& path);
  /// Parse YAML text; `name` stands for the file name in messages.
  static Config load_string(const std::string& text, const std::string& name = "<string>");

  Config(const Config& other);
  Config& operator=(const Config& other);
  Config(Config&&) = default;
  Config& operator=(Config&&) = default;
  ~Config();

  /// Apply one Hydra-style override "key.path=value"; the value is parsed as YAML
  /// (`hidden=[64,64]`, `lr=1e-4`, `name="007"`). Missing intermediate maps are created;
  /// list items are addressed by index (`network.hidden.1=64`, index < length). Errors about
  /// the value, then and later, point at the override. Apply overrides before reading.
  void apply_override(const std::string& assignment);
  /// Apply several overrides in order.
  void apply_overrides(const std::vector<std::string>& assignments);

  /// The whole document as YAML (overrides applied; quoted strings stay quoted), for
  /// --print-config and for storing with results. Loading it back gives the same values.
  std::string dump() const;
  /// A view of the top-level map.
  ConfigNode root() const;
  /// The file name (or the name given to load_string).
  const std::string& name() const;
  /// The overrides applied so far, in order.
  const std::vector<std::string>& overrides() const;

 private:
  Config() = default;
  YAML::Node root_;
  std::shared_ptr<detail::ConfigState> state_;
};

}  // namespace diffusion
