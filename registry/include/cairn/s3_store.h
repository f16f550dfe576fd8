// Chunks in an S3 object store (Ceph RGW and the like), shared by several
// node frontends (issue 17).
//
// Layout under PREFIX in the bucket, in the manner of restic's repository:
//   PREFIX/packs/<16 hex>  chunk records ("CRN1", u32 length, 32-byte digest,
//                          bytes) back to back, then a trailer naming them
//   PREFIX/index/<16 hex>  the same trailer alone: digest, offset, length
//                          per chunk of the pack of that name
// A pack is PUT whole, then its index object: a reader that finds an index
// object finds a complete pack, and no reader ever sees a chunk whose pack
// is incomplete. Each frontend names its packs at random, so frontends on
// one bucket never overwrite each other. Reads are ranged GETs, every chunk
// re-hashed (the bucket is not trusted to return what it was given).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cairn/clock.h"
#include "cairn/store.h"

namespace cairn {

struct S3Options {
  std::string endpoint;  // http://host:port or https://host:port
  std::string bucket;
  std::string prefix;              // inside the bucket; "" or ending in "/"
  std::string region = "default";  // SigV4 region (RGW: the zonegroup's name)
  std::string access_key, secret_key;
  // A pack object is written once this many chunk bytes are buffered (and
  // at Flush/Sync). Default: 16 MiB.
  uint64_t pack_bytes = 16 << 20;
  // A request that fails for the network or a 5xx answer is tried again
  // after 0.1, 0.2, 0.4 ... s, at most this many times in all. Default: 5.
  int max_attempts = 5;
  // Packs PUT at once, each by its own thread. While they upload, the
  // chunks in them are served from memory; memory for packs is bounded by
  // (parallel_uploads + 2) x pack_bytes: a Put waits when that many are
  // waiting for the bucket. Default: 4.
  int parallel_uploads = 4;
  // A read cache on local disk: chunks read from the bucket are kept in
  // segment files under cache_dir, at most cache_bytes of them (the oldest
  // segment goes first); every hit is re-hashed. 0 turns it off. A node puts
  // it under its data folder (DATA/s3-cache) when cache_dir is empty.
  std::string cache_dir;
  // The chunk index's folder (RocksDB: where each chunk lies in the bucket,
  // which index objects were read). Required; a node puts it under its data
  // folder (DATA/s3-index).
  std::string index_dir;
  uint64_t cache_bytes = 0;
  // Notices: damaged index objects found in the bucket, and failed requests
  // about to be tried again (at most one a second). May be empty.
  std::function<void(const std::string&)> log;
  int timeout_seconds = 30;  // per request
  // This frontend collects the bucket's garbage (its gc passes open and
  // close the rounds every frontend answers; see s3_store_gc.cc). One
  // frontend per bucket should. Default: false.
  bool collector = false;
  // When index objects were first read, for the grace period of garbage
  // collection; null: the system clock. Not owned.
  Clock* clock = nullptr;
};

// `base` with what the environment sets: CAIRN_S3_ENDPOINT, CAIRN_S3_REGION,
// CAIRN_S3_ACCESS_KEY, CAIRN_S3_SECRET_KEY.
S3Options S3OptionsFromEnvironment(S3Options base);

// Parses "s3://bucket/prefix" into bucket and prefix (prefix ends in "/"
// when not empty). InvalidArgument otherwise.
absl::Status ParseS3Url(const std::string& url, S3Options* o);

// Opens the store: creates the bucket when it is missing, then reads every
// index object into memory, and opens the read cache. Unavailable when the endpoint cannot be
// reached; PermissionDenied for refused credentials. Thread-safe. Backup is not supported
// (Unimplemented): the bucket is backed up with the object store's own tools.
absl::StatusOr<std::unique_ptr<ChunkStore>> OpenS3ChunkStore(const S3Options& options);

// The frontends registered in the bucket's garbage collection (each must
// answer a round before it ends): "ID  host=... index=... started=..." a
// line each.
absl::StatusOr<std::vector<std::string>> ListS3Frontends(const S3Options& options);
// Forgets frontend `id` (one stopped for good): rounds no longer wait for
// it. It registers again if it starts. NotFound when it is not registered;
// FailedPrecondition when it said it was running less than 15 minutes ago,
// unless `force`.
absl::Status ForgetS3Frontend(const S3Options& options, const std::string& id, bool force);

}  // namespace cairn
