#include <diffusion/run/sweep.hpp>

#include <filesystem>
#include <limits>
#include <set>

namespace diffusion {

namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

std::string where(const std::string& spec) { return spec.empty() ? "" : "sweep '" + spec + "': "; }

}  // namespace

std::vector<std::string> split_sweep_values(const std::string& list, const std::string& spec) {
  std::vector<std::string> values;
  std::string current;
  std::vector<char> open;  // expected closing brackets
  char quote = 0;
  auto push = [&] {
    std::string v = trim(current);
    if (v.empty()) throw SweepError(where(spec) + "empty value in the list '" + list + "'");
    values.push_back(std::move(v));
    current.clear();
  };
  for (std::size_t i = 0; i < list.size(); ++i) {
    const char c = list[i];
    if (quote) {
      current += c;
      if (c == '\\' && quote == '"' && i + 1 < list.size()) {
        current += list[++i];
      } else if (c == quote) {
        quote = 0;
      }
      continue;
    }
    if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '[' || c == '{') {
      open.push_back(c == '[' ? ']' : '}');
    } else if (c == ']' || c == '}') {
      if (open.empty() || open.back() != c)
        throw SweepError(where(spec) + "unbalanced '" + std::string(1, c) + "' in '" + list + "'");
      open.pop_back();
    } else if (c == ',' && open.empty()) {
      push();
      continue;
    }
    current += c;
  }
  if (quote) throw SweepError(where(spec) + "unterminated quote in '" + list + "'");
  if (!open.empty())
    throw SweepError(where(spec) + "missing '" + std::string(1, open.back()) + "' in '" + list + "'");
  if (trim(list).empty()) throw SweepError(where(spec) + "empty value list");
  push();
  return values;
}

SweepAxis parse_sweep_spec(const std::string& spec) {
  const auto eq = spec.find('=');
  if (eq == std::string::npos)
    throw SweepError("sweep '" + spec + "': expected key=value1,value2,... (no '=')");
  SweepAxis axis;
  axis.key = trim(spec.substr(0, eq));
  if (axis.key.empty()) throw SweepError("sweep '" + spec + "': empty key before '='");
  axis.values = split_sweep_values(spec.substr(eq + 1), spec);
  return axis;
}

bool is_sweep_spec(const std::string& spec) {
  const auto eq = spec.find('=');
  if (eq == std::string::npos) return false;
  try {
    return split_sweep_values(spec.substr(eq + 1)).size() > 1;
  } catch (const SweepError&) {
    // A malformed list with a top-level comma is still meant as a sweep (parse reports it).
    return spec.find(',', eq) != std::string::npos;
  }
}

std::size_t sweep_size(const std::vector<SweepAxis>& axes) {
  std::size_t n = 1;
  for (const auto& a : axes) {
    if (a.values.empty()) throw SweepError("sweep '" + a.key + "': empty value list");
    if (n > std::numeric_limits<std::size_t>::max() / a.values.size())
      throw SweepError("sweep: too many points");
    n *= a.values.size();
  }
  return n;
}

std::vector<std::string> sweep_point(const std::vector<SweepAxis>& axes, std::size_t index) {
  const std::size_t n = sweep_size(axes);
  if (index >= n)
    throw SweepError("sweep point " + std::to_string(index) + " out of range (the sweep has " +
                     std::to_string(n) + " points, 0.." + std::to_string(n - 1) + ")");
  std::vector<std::string> out(axes.size());
  // Mixed radix, last axis fastest.
  for (std::size_t k = axes.size(); k-- > 0;) {
    const auto& a = axes[k];
    out[k] = a.key + "=" + a.values[index % a.values.size()];
    index /= a.values.size();
  }
  return out;
}

std::vector<std::vector<std::string>> sweep_points(const std::vector<SweepAxis>& axes) {
  std::vector<std::vector<std::string>> points;
  const std::size_t n = sweep_size(axes);
  points.reserve(n);
  for (std::size_t i = 0; i < n; ++i) points.push_back(sweep_point(axes, i));
  return points;
}

void check_distinct_keys(const std::vector<SweepAxis>& axes) {
  std::set<std::string> seen;
  for (const auto& a : axes)
    if (!seen.insert(a.key).second) throw SweepError("sweep: key '" + a.key + "' is swept twice");
}

std::string sweep_result_path(const std::string& out, std::size_t index) {
  const std::filesystem::path p(out);
  const std::string ext = p.has_extension() ? p.extension().string() : ".h5";
  return (p.parent_path() / (p.stem().string() + "_" + std::to_string(index) + ext)).string();
}

std::string sweep_index_path(const std::string& out) {
  const std::filesystem::path p(out);
  return (p.parent_path() / (p.stem().string() + "_index.tsv")).string();
}

std::string format_sweep_index(const std::vector<SweepAxis>& axes, const std::string& out) {
  std::string text = "index\tresults\toverrides\n";
  const std::size_t n = sweep_size(axes);
  for (std::size_t i = 0; i < n; ++i) {
    text += std::to_string(i) + "\t" +
            std::filesystem::path(sweep_result_path(out, i)).filename().string() + "\t";
    const auto point = sweep_point(axes, i);
    for (std::size_t k = 0; k < point.size(); ++k) text += (k ? " " : "") + point[k];
    text += "\n";
  }
  return text;
}

std::size_t parse_sweep_index(const std::string& text, std::size_t size, const std::string& what) {
  if (text.empty() || text.size() > 18 || text.find_first_not_of("0123456789") != std::string::npos)
    throw SweepError(what + " '" + text + "': expected a point index (a non-negative integer)");
  const std::size_t i = std::stoull(text);
  if (i >= size)
    throw SweepError(what + " " + text + " out of range (the sweep has " + std::to_string(size) +
                     " points, 0.." + std::to_string(size - 1) + ")");
  return i;
}

}  // namespace diffusion
