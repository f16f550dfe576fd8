// cairn-node's offline-bundle commands (export, import, inventory): a
// stopped node's data directory is opened here; a running node is asked by
// request file and signal, like backup and gc (admin_cmd.h).
#pragma once

#include <string>
#include <vector>

#include "cairn/clock.h"
#include "cairn/repository.h"
#include "config.h"

namespace cairn::node {

struct NodeExportArgs {
  std::vector<std::string> refs;
  std::string to, split, have_file;
  std::vector<std::string> base;
};
// `cairn-node export REF... --to FILE`: from a stopped node's data.
int ExportCmd(ServeConfig cfg, const NodeExportArgs& a);
// `cairn-node import FILE...`: 0 once every release in the bundle is visible.
int ImportCmd(ServeConfig cfg, const std::vector<std::string>& files);
// `cairn-node inventory [--to FILE]`: what the node holds, for an exporter.
int InventoryCmd(ServeConfig cfg, const std::string& to);
// The serving node's side (on SIGUSR2): answers import and inventory
// requests in `data`. An import stops (resumable) when `cancel` fires.
size_t AnswerBundleRequests(Repository* repo, const std::string& data, Cancellation* cancel);

}  // namespace cairn::node
