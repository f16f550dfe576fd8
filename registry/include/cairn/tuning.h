// Process-wide tuning shared by cairn and cairn-node.
#pragma once

namespace cairn {

// Call first thing in main(). On this class of VM a page fault is expensive,
// and gRPC's receive path touches fresh heap pages at a high rate: glibc's
// `glibc.malloc.hugetlb=1` tunable (transparent huge pages for the heap) cut
// minor faults 20x and pull time by 40% (docs/benchmarks.md). Tunables are
// read only at process start, so when it is not set this re-executes the
// program once with it set (skipped when CAIRN_NO_REEXEC is set, or when the
// re-exec fails). Then sets the mallopt values of ../shared/LIMITS.md that
// keep large buffers in the heap instead of returning them to the OS, and caps
// glibc's arenas at `max_arenas`: chunks are allocated on gRPC's threads and
// freed on others, and with one arena per thread the retained heap grew with
// the model (a 2 GiB pull peaked at 308 MiB RSS; with 2 arenas, 168 MiB).
void TuneProcess(char** argv, int max_arenas);

}  // namespace cairn
