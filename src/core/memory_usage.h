// The process's memory use, from /proc/self/status (Linux): for reports (`--json` peak RSS) and for locating a
// pipeline's peak stage by stage (CATQ_TRACE_MEMORY=1 prints one stderr line per traced stage).
#pragma once
#include <cstdint>

namespace catq {

// Resident set size now and its high-water mark, bytes; 0 where /proc is unavailable.
int64_t resident_bytes();
int64_t peak_resident_bytes();

// With CATQ_TRACE_MEMORY set (non-empty, not "0"): prints "memory: <seconds since the first trace> s <stage> rss <MB>
// peak <MB>" to stderr.
void trace_memory(const char* stage, long index = -1);

}  // namespace catq
