// Offline bundles: releases carried on a disk where no link is worth using.
// A bundle is one stream of records (format in docs/protocol.md, "Bundles"):
// the trust chain, signed manifests and tags, chunk lists, then only the
// chunks the receiver lacks, in a fixed order, ending with a record that
// counts what came before. It is written as one file or as numbered volumes
// (FILE.001, FILE.002, ...) and read strictly forward. Nothing in a bundle is
// trusted: the importer checks every object against its own trust root and
// makes nothing visible unless the whole bundle checks out.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "cairn/clock.h"
#include "cairn/replication.h"
#include "cairn/repository.h"
#include "cairn/v1/service.pb.h"

namespace cairn {

inline constexpr uint32_t kBundleFormat = 1;
// Every volume starts with: "CAIRNVOL", format (u32), bundle id (16 bytes),
// volume number from 1 (u32), big-endian.
inline constexpr size_t kVolumeHeaderBytes = 32;
inline constexpr std::string_view kVolumeMagic = "CAIRNVOL";
// Record types: type (u8), payload length (u32, big-endian), payload.
enum class BundleRecord : uint8_t {
  kHeader = 1,     // BundleHeader
  kTrustRoot = 2,  // a signed trust root envelope, oldest first
  kRelease = 3,    // BundleRelease
  kObject = 4,     // a chunk list's bytes
  kChunk = 5,      // 32-byte SHA-256, then the chunk's bytes
  kEnd = 6,        // BundleEnd
};
inline constexpr size_t kRecordHeaderBytes = 5;
// What an importer holds in memory: release records (envelopes) per bundle.
inline constexpr size_t kMaxBundleReleases = 10000;
inline constexpr size_t kMaxBundleReleaseBytes = 64 << 20;
inline constexpr size_t kMaxTagsPerRelease = 64;

// ---- Reading ----
// A forward-only byte stream.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Up to n bytes into buf; 0 only at the end of the stream.
  virtual absl::StatusOr<size_t> Read(char* buf, size_t n) = 0;
  // Passes over n bytes (default: reads them). DataLoss when the stream ends
  // first.
  virtual absl::Status Skip(uint64_t n);
  // Reads exactly n bytes; DataLoss (saying `what`) when the stream ends first.
  absl::Status ReadFull(char* buf, size_t n, std::string_view what);
};

// A bundle's volumes as one stream: each volume's header is checked (magic,
// format, one bundle id, numbers 1, 2, ... in the order given) and removed.
// Skip seeks (a resumed import passes over what it holds without reading it).
class VolumeReader final : public ByteSource {
 public:
  // `paths` in order. A single PATH that does not exist while PATH.001 does
  // stands for PATH.001, PATH.002, ... (as many as exist).
  static absl::StatusOr<std::unique_ptr<VolumeReader>> Open(std::vector<std::string> paths);
  ~VolumeReader() override;
  absl::StatusOr<size_t> Read(char* buf, size_t n) override;
  absl::Status Skip(uint64_t n) override;
  // Bytes of record data in all volumes (for progress); read so far.
  uint64_t total_bytes() const { return total_; }
  uint64_t position() const { return position_; }
  const std::vector<std::string>& paths() const { return paths_; }
  const std::string& bundle_id() const { return bundle_id_; }

 private:
  VolumeReader() = default;
  absl::Status OpenVolume(size_t i);
  std::vector<std::string> paths_;
  std::vector<uint64_t> sizes_;  // record bytes per volume
  std::string bundle_id_;
  size_t current_ = 0;
  int fd_ = -1;
  uint64_t left_in_volume_ = 0;  // not yet read into buf_
  uint64_t total_ = 0, position_ = 0;
  static constexpr size_t kReadBuffer = 1 << 20;
  std::string buf_;
  size_t buf_pos_ = 0;
};

// ---- Writing ----
// Writes a bundle stream to FILE, or with split_bytes > 0 to volumes
// FILE.001, FILE.002 ... of at most split_bytes each. Each file is written as
// NAME.partial, synced, and renamed when whole; Abort (or destruction before
// Finish) removes every file it wrote.
class VolumeWriter {
 public:
  static constexpr uint64_t kNoSplit = ~uint64_t{0};
  // split_bytes: kNoSplit for one file; else at least 1 MiB.
  static absl::StatusOr<std::unique_ptr<VolumeWriter>> Create(std::string path,
                                                              uint64_t split_bytes,
                                                              std::string bundle_id);
  ~VolumeWriter();
  absl::Status Write(std::string_view bytes);
  absl::Status Finish();
  void Abort();
  const std::vector<std::string>& paths() const { return done_; }
  uint64_t bytes_written() const { return written_; }
  const std::string& bundle_id() const { return bundle_id_; }

 private:
  VolumeWriter() = default;
  absl::Status Flush();  // hands buf_ to the writes' thread
  absl::Status StartVolume();
  absl::Status EndVolume();
  class BackgroundWrites;  // the writes go on a thread of their own
  std::unique_ptr<BackgroundWrites> io_;
  std::string path_, bundle_id_;
  uint64_t split_ = 0;
  int fd_ = -1;
  uint32_t volume_ = 0;
  uint64_t in_volume_ = 0, written_ = 0;
  std::string buf_;
  std::string partial_;            // the file being written
  std::vector<std::string> done_;  // renamed volumes
  bool finished_ = false;
};

// Frames a record.
void AppendRecord(BundleRecord type, std::string_view payload, std::string* out);
std::string NewBundleId();  // 16 random bytes

// What a receiving node holds (`cairn-node inventory`): a small text file
// an exporter reads to leave out what the receiver already has.
//   cairn-inventory 1
//   node <id>
//   trust <version>
//   release <name> <sha256:...>     (one per held release)
struct Inventory {
  std::string node_id;
  uint64_t trust_version = 0;
  std::vector<std::pair<std::string, std::string>> releases;  // name, digest
};
std::string FormatInventory(const Inventory& inv);
// InvalidArgument naming the line when the text is not an inventory.
absl::StatusOr<Inventory> ParseInventory(std::string_view text);
absl::StatusOr<Inventory> InventoryOf(Repository* repo);

struct ExportOptions {
  std::vector<std::string> refs;  // NAME[:TAG], NAME@VERSION, NAME@sha256:...
  // Releases the receiver holds ("NAME@sha256:..."): their chunk lists and
  // chunks are left out (the inventory's, and --base).
  std::vector<std::string> have;
  uint64_t trust_after = 0;  // the receiver's trust version: older roots left out
  std::string source;        // shown to the importer
  Cancellation* cancel = nullptr;
  // Called after each chunk batch: chunk bytes written, and to write.
  std::function<void(uint64_t, uint64_t)> progress;
  std::function<void(const std::string&)> log;  // notices (a base not held)
};
struct ExportReport {
  uint64_t releases = 0, trust_roots = 0, objects = 0;
  uint64_t chunks = 0, chunk_bytes = 0;
  uint64_t chunks_left_out = 0, bytes_left_out = 0;  // the receiver has them
  uint64_t bytes_written = 0;
  std::vector<std::string> volumes;
  double seconds = 0;
};
// A node's own repository as a bundle source (`cairn-node export`, tests):
// what it serves, read from its stores.
std::unique_ptr<Upstream> RepositorySource(Repository* repo);

// Reads the releases from `src` (a node, the client's store) and writes the
// bundle. Every chunk is hashed on the way unless the source did.
absl::StatusOr<ExportReport> ExportBundle(Upstream& src, const ExportOptions& o, VolumeWriter* out);

struct ImportOptions {
  Cancellation* cancel = nullptr;
  // Called every few MiB: bundle bytes consumed.
  std::function<void(uint64_t)> progress;
  Clock* clock = nullptr;  // default: the repository's
  // The id the volume headers carry (VolumeReader::bundle_id()); when set,
  // the header record must carry the same.
  std::string bundle_id;
};
// Imports a bundle stream into `repo` (one import per repository at a time:
// ResourceExhausted for a second): the trust chain is walked from the
// node's own root, every manifest and tag is verified, every chunk list and
// chunk hashed; only once the end record is read and every release is
// complete are the releases committed. Chunks already held are passed over
// (Skip), so an interrupted import run again resumes where it stopped, and a
// second import of the same bundle changes nothing. Errors say which record
// was wrong; nothing from a refused bundle is visible.
absl::StatusOr<cairn::v1::ImportResponse> ImportBundle(Repository* repo, ByteSource* in,
                                                       const ImportOptions& o = {});

// What an import did, for a person: one line per release, then the totals.
std::string DescribeImport(const cairn::v1::ImportResponse& r);
// What an export wrote.
std::string DescribeExport(const ExportReport& r);

}  // namespace cairn
