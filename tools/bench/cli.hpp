// Command-line helpers shared by the benchmarks: usage errors and checked numbers.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace bench {

struct Cli {
  const char* tool;
  const char* usage;

  [[noreturn]] void fail(const std::string& why) const {
    std::fprintf(stderr, "%s: %s\n%s", tool, why.c_str(), usage);
    std::exit(2);
  }

  long integer(const std::string& flag, const std::string& text, long min) const {
    char* end = nullptr;
    const long v = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || v < min)
      fail(flag + " needs an integer >= " + std::to_string(min) + ", got '" + text + "'");
    return v;
  }

  double number(const std::string& flag, const std::string& text, double min) const {
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || !(v >= min))
      fail(flag + " needs a number >= " + std::to_string(min) + ", got '" + text + "'");
    return v;
  }

  /// A comma-separated list of integers, e.g. "64,256,1024".
  std::vector<long> integers(const std::string& flag, const std::string& text, long min) const {
    std::vector<long> v;
    std::size_t from = 0;
    for (;;) {
      const std::size_t comma = text.find(',', from);
      v.push_back(integer(flag, text.substr(from, comma - from), min));
      if (comma == std::string::npos) return v;
      from = comma + 1;
    }
  }
};

}  // namespace bench
