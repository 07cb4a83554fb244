#pragma once
// Small text helpers for error messages: edit distance, "did you mean ...?", joining names.
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace diffusion {

/// Levenshtein distance (insertions, deletions, substitutions; case-sensitive).
std::size_t edit_distance(const std::string& a, const std::string& b);

/// The candidate closest to `word`, if it is close enough to be a plausible typo:
/// distance <= max(2, |word| / 3) and smaller than the longer of the two lengths (so "lr" is
/// never "corrected" to an unrelated two-letter name). Distances are compared ignoring ASCII
/// case first ("DDIM" -> "ddim"), then case-sensitively; remaining ties go to the earliest
/// candidate. An exact match is returned as is.
std::optional<std::string> nearest(const std::string& word,
                                   const std::vector<std::string>& candidates);

/// The shortest decimal text that reads back as x, so numbers print as written ("1e-4" as
/// "0.0001", "999", "33.25"); ".nan", "inf" and "-inf" as YAML spells them.
std::string format_number(double x);

/// The items separated by `sep`: join({"a", "b"}, ", ") == "a, b".
std::string join(const std::vector<std::string>& items, const std::string& sep);

}  // namespace diffusion
