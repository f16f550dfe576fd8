// Process-wide tuning shared by cairn and cairn-node.
#pragma once

namespace cairn {

// Call first thing in main(). On this class of VM a page fault is expensive,
// and gRPC's receive path touches fresh heap pages at a high rate. With
// `huge_heap`, glibc's `glibc.malloc.hugetlb=1` tunable (transparent huge
// pages for the heap) is set: on 2026-11-23 it cut a pull's minor faults 20x
// and its time by 40%, but on 2026-12-01 the same host cleared each fresh
// 2 MiB page so slowly that a client with it took 1.9-2.6 s for a 1 GiB pull
// against 1.5 s without (docs/benchmarks.md). The short-lived client does not
// set it (most of its heap is fresh); the node, whose heap is reused once
// warm, does. Tunables are read only at process start, so when it is not set
// this re-executes the program once with it set (skipped when CAIRN_NO_REEXEC
// is set, or when the re-exec fails). Then sets the mallopt values of
// ../shared/LIMITS.md that keep large buffers in the heap instead of
// returning them to the OS, and caps glibc's arenas at `max_arenas`: chunks
// are allocated on gRPC's threads and freed on others, and with one arena per
// thread the retained heap grew with the model (a 2 GiB pull peaked at 308
// MiB RSS; with 2 arenas, 168 MiB).
void TuneProcess(char** argv, int max_arenas, bool huge_heap);

}  // namespace cairn
