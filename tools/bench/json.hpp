// Writing the benchmarks' JSON lines.
#pragma once

#include <cmath>
#include <cstdio>
#include <string>

namespace bench {

/// A JSON number with 6 significant digits; null for NaN (not measured).
inline std::string json_number(double v) {
  if (std::isnan(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

}  // namespace bench
