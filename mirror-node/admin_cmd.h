// cairn-node's administrative commands (check-config, scrub, backup, gc): what
// they print and their exit codes are in docs/operators.md.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "cairn/clock.h"
#include "cairn/repository.h"
#include "cairn/s3_store.h"
#include "config.h"
#include "gc_loop.h"

namespace cairn::node {

// The pid of the serving cairn-node holding `data` (0 when none does);
// FailedPrecondition when another process holds it.
absl::StatusOr<int> ServingNode(const std::string& data);
// Opens a stopped node's data directory for an offline command (`what`: what
// is done to it, for errors). SIGUSR1/2 are blocked in this process.
absl::StatusOr<std::unique_ptr<Repository>> OpenOffline(const ServeConfig& cfg, const char* what);
// Writes a `kind` request for the serving node `pid`, signals it (SIGUSR2)
// and waits for its answer: the text after "ok ", or the error it gave.
inline constexpr size_t kMaxAnswerBytes = 64 << 20;
// A request (import: thousands of volume paths).
inline constexpr size_t kMaxRequestFileBytes = 16 << 20;
absl::StatusOr<std::string> AskServingNode(const std::string& data, int pid, std::string_view kind,
                                           const std::string& body);
// The node's side: answers each `kind` request in `data`, oldest first, with
// answer(lines of the request); "ok ..." or an error line.
size_t AnswerRequests(const std::string& data, std::string_view kind,
                      const std::function<std::string(const std::vector<std::string>&)>& answer);

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
// The chunk store's S3 options from [node] chunks and [s3] (and CAIRN_S3_*);
// none when chunks are on local disk.
absl::StatusOr<std::optional<S3Options>> S3OptionsOf(const ServeConfig& cfg);
// The [node] gc_* settings as the loop's options.
GcLoopOptions GcLoopOptionsOf(const ServeConfig& cfg);
// `cairn-node gc [--dry-run]`: 0 once a pass ran (on the serving node, or
// here on a stopped one) and its report was printed.
int Gc(ServeConfig cfg, bool dry_run);
// The node's side of it (on SIGUSR2): runs a pass per request in `data`.
size_t AnswerGcRequests(GcLoop* gc, const std::string& data);
// `cairn-node s3-frontends --chunks s3://B/P [--config F] [--forget ID
// [--force]]`:
// lists the frontends registered in the bucket's garbage collection, or
// forgets one.
int S3FrontendsCmd(const std::string& config, const std::string& chunks, const std::string& forget,
                   bool force);

}  // namespace cairn::node
