// cairn-node's administrative commands (check-config, scrub, backup, gc): what
// they print and their exit codes are in docs/operators.md.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "cairn/clock.h"
#include "cairn/repository.h"
#include "config.h"
#include "gc_loop.h"

namespace cairn::node {

// Prints each line of the status's message as "cairn-node: error: ..."; 1.
int Fail(const absl::Status& s);
// `cairn-node check-config FILE`: 0 when the file and what it names load.
int CheckConfig(const std::string& path);
// `cairn-node scrub --now`: 0, or 2 when an offline scrub found damage.
int Scrub(ServeConfig cfg);
// `cairn-node backup --to DEST`: 0 once DEST holds a consistent copy.
int Backup(ServeConfig cfg, const std::string& dest);
// The node's side (on SIGUSR2, on a thread of its own): answers every
// request `cairn-node backup` left in `data`, copying `repo` for each; stops
// (and removes the partial copy) when `cancel` is cancelled. Returns how many
// it answered.
size_t AnswerBackupRequests(Repository* repo, const std::string& data, Cancellation* cancel);
// The [node] gc_* settings as the loop's options.
GcLoopOptions GcLoopOptionsOf(const ServeConfig& cfg);
// `cairn-node gc [--dry-run]`: 0 once a pass ran (on the serving node, or
// here on a stopped one) and its report was printed.
int Gc(ServeConfig cfg, bool dry_run);
// The node's side of it (on SIGUSR2): runs a pass per request in `data`.
size_t AnswerGcRequests(GcLoop* gc, const std::string& data);

}  // namespace cairn::node
