// Writing the benchmarks' JSON lines, and reading the flat JSON line a baseline script prints.
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace bench {

/// A JSON number with 6 significant digits; null for NaN (not measured).
inline std::string json_number(double v) {
  if (std::isnan(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

/// A number field of a flat JSON line ("key": value), NaN if absent.
inline double json_field_number(const std::string& line, const std::string& key) {
  const std::size_t at = line.find("\"" + key + "\": ");
  if (at == std::string::npos) return std::nan("");
  return std::strtod(line.c_str() + at + key.size() + 4, nullptr);
}

/// A string field of a flat JSON line ("key": "value"), empty if absent.
inline std::string json_field_string(const std::string& line, const std::string& key) {
  const std::size_t at = line.find("\"" + key + "\": \"");
  if (at == std::string::npos) return "";
  const std::size_t from = at + key.size() + 5;
  return line.substr(from, line.find('"', from) - from);
}

/// What a baseline script printed: all of it (for the error message), its last JSON line (a line
/// that starts with '{'), and whether it exited with status 0.
struct ScriptOutput {
  std::string text, json;
  bool ok = false;
};

/// Runs cmd through the shell (add "2>&1" to capture stderr too) and collects its output.
inline ScriptOutput run_script(const std::string& cmd) {
  ScriptOutput r;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) return r;
  char buf[8192];
  while (std::fgets(buf, sizeof buf, pipe)) {
    r.text += buf;
    if (buf[0] == '{') r.json = buf;
  }
  r.ok = ::pclose(pipe) == 0 && !r.json.empty();
  return r;
}

}  // namespace bench
