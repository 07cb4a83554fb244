// What the benchmarks report about the machine and this process.
#pragma once

#include <string>

namespace bench {

/// Peak resident memory of this process so far (getrusage ru_maxrss), MiB.
double peak_rss_mb();
/// The 1-minute load average (/proc/loadavg): other work on the machine skews the timings.
double load_average();
/// "AMD EPYC, 2 CPUs"-style description (/proc/cpuinfo's model name and the CPU count).
std::string machine_description();

}  // namespace bench
