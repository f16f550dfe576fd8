// Trust-root administration for `cairn trust`: making root version N+1 from N
// (delegate, revoke, rotate), co-signing it when its keys live on different
// machines, and moving roots between trust files and nodes.
//
// Files: a trust file T holds the newest root. When T moves from vN to vN+1,
// vN is kept beside it as T.vN, so T's directory holds the whole chain that
// nodes and clients walk. A root that does not yet carry enough signatures is
// written to T.pending until co-signers add theirs.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cairn/crypto.h"
#include "cairn/trust.h"
#include "client.h"

namespace cairn::client {

// T's root, whatever its expiry (administration must work on an expired root:
// rotating is how it is renewed).
absl::StatusOr<TrustRootView> LoadTrustFileForAdmin(const std::string& path);

// Every root in T's chain: T.v1, T.v2, ... then T, oldest first.
absl::StatusOr<std::vector<std::string>> TrustFileChain(const std::string& path);

struct RootChange {
  bool pending = false;  // written to T.pending: more signatures needed
  std::string written;   // the file written
  uint64_t version = 0;
  SuccessorSignatures signatures;
  std::string envelope;  // the root's envelope bytes
};

// Signs `next` (which must be version cur+1) with `keys`. Each key must be a
// root key of cur or of next. When the signatures meet both thresholds, cur
// is archived as T.vN and next replaces T; otherwise next goes to T.pending.
// FailedPrecondition when a T.pending already exists.
absl::StatusOr<RootChange> ProposeRoot(const std::string& trust_path, const TrustRootView& cur,
                                       cairn::v1::TrustRoot next,
                                       const std::vector<const SigningKey*>& keys);

// Adds `keys`' signatures to T.pending, then finishes it as ProposeRoot does.
absl::StatusOr<RootChange> CoSignPendingRoot(const std::string& trust_path,
                                             const std::vector<const SigningKey*>& keys);

// The pending root's signature count, or NotFound.
absl::StatusOr<RootChange> PendingRoot(const std::string& trust_path);

// Offers T's chain to a node. Returns the node's root version afterwards.
absl::StatusOr<cairn::v1::OfferTrustRootsResponse> PushTrust(Connection& node,
                                                             const std::string& trust_path);

// Fetches the roots newer than T's from each node, walks the chain and, when
// it reaches a newer root, archives T as T.vN and writes the newest. Returns
// the versions before and after.
struct TrustUpdate {
  uint64_t from = 0, to = 0;
  std::string source;  // the node the newest root came from
};
// `refused` (optional) receives one line per node whose offered chain did not
// verify; nodes that could not be asked are skipped silently when it is given.
absl::StatusOr<TrustUpdate> UpdateTrustFile(const std::vector<Connection*>& nodes,
                                            const std::string& trust_path,
                                            std::vector<std::string>* refused = nullptr);

// Loads private keys; InvalidArgument when none is given.
absl::StatusOr<std::vector<std::unique_ptr<SigningKey>>> LoadPrivateKeys(
    const std::vector<std::string>& paths);

}  // namespace cairn::client
