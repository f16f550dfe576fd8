// Bundle framing: volumes (reader, writer), records, the inventory file.
#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "cairn/bundle.h"
#include "cairn/objects.h"
#include "cairn/page_cache.h"
#include "cairn/status.h"
#include "cairn/strings.h"

namespace cairn {
namespace {

void PutU32(uint32_t v, char* p) {
  p[0] = static_cast<char>(v >> 24);
  p[1] = static_cast<char>(v >> 16);
  p[2] = static_cast<char>(v >> 8);
  p[3] = static_cast<char>(v);
}

uint32_t GetU32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | u[3];
}

std::string VolumeName(const std::string& path, uint32_t n) {
  char num[16];
  std::snprintf(num, sizeof(num), ".%03u", n);
  return path + num;
}

bool Exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

}  // namespace

void AppendRecord(BundleRecord type, std::string_view payload, std::string* out) {
  char h[kRecordHeaderBytes];
  h[0] = static_cast<char>(type);
  PutU32(static_cast<uint32_t>(payload.size()), h + 1);
  out->append(h, sizeof(h));
  out->append(payload);
}

std::string NewBundleId() {
  std::string b(16, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(b.data()), 16) != 1) std::abort();
  return b;
}

// ---- ByteSource ----

absl::Status ByteSource::ReadFull(char* buf, size_t n, std::string_view what) {
  size_t got = 0;
  while (got < n) {
    CAIRN_ASSIGN_OR_RETURN(size_t k, Read(buf + got, n - got));
    if (k == 0) {
      return absl::DataLossError(StrCat("the bundle ends inside ", what,
                                        ": it is cut short (a volume missing or truncated?)"));
    }
    got += k;
  }
  return absl::OkStatus();
}

absl::Status ByteSource::Skip(uint64_t n) {
  char buf[64 << 10];
  while (n > 0) {
    const size_t k = static_cast<size_t>(std::min<uint64_t>(n, sizeof(buf)));
    CAIRN_RETURN_IF_ERROR(ReadFull(buf, k, "a chunk record"));
    n -= k;
  }
  return absl::OkStatus();
}

// ---- VolumeReader ----

absl::StatusOr<std::unique_ptr<VolumeReader>> VolumeReader::Open(std::vector<std::string> paths) {
  if (paths.empty()) return absl::InvalidArgumentError("no bundle file given");
  if (paths.size() == 1 && !Exists(paths[0]) && Exists(VolumeName(paths[0], 1))) {
    const std::string base = paths[0];
    paths.clear();
    for (uint32_t n = 1; Exists(VolumeName(base, n)); ++n) paths.push_back(VolumeName(base, n));
  }
  std::unique_ptr<VolumeReader> r(new VolumeReader());
  r->paths_ = std::move(paths);
  // Every header is checked before a byte is imported: a volume of another
  // bundle or out of order is refused at once, not hours in.
  for (size_t i = 0; i < r->paths_.size(); ++i) {
    CAIRN_RETURN_IF_ERROR(r->OpenVolume(i));
    r->sizes_.push_back(r->left_in_volume_);
    r->total_ += r->left_in_volume_;
  }
  ::close(r->fd_);
  r->fd_ = -1;
  CAIRN_RETURN_IF_ERROR(r->OpenVolume(0));
  return r;
}

VolumeReader::~VolumeReader() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status VolumeReader::OpenVolume(size_t i) {
  if (fd_ >= 0) ::close(fd_);
  const std::string& p = paths_[i];
  // Non-blocking: a FIFO or a device named by mistake (or swapped in) must
  // not hang the open; it is refused below.
  fd_ = ::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd_ < 0) return ErrnoStatus(errno, "cannot open bundle volume " + p);
  struct stat st;
  if (::fstat(fd_, &st) != 0) return ErrnoStatus(errno, "cannot stat " + p);
  if (!S_ISREG(st.st_mode)) return absl::InvalidArgumentError(p + " is not a regular file");
  ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) & ~O_NONBLOCK);
  char h[kVolumeHeaderBytes];
  size_t got = 0;
  while (got < sizeof(h)) {
    ssize_t k = ::read(fd_, h + got, sizeof(h) - got);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return ErrnoStatus(errno, "cannot read " + p);
    if (k == 0) break;
    got += static_cast<size_t>(k);
  }
  if (got < sizeof(h) || std::string_view(h, 8) != kVolumeMagic) {
    return absl::InvalidArgumentError(p + " is not a Cairn bundle (no CAIRNVOL header)");
  }
  const uint32_t format = GetU32(h + 8);
  if (format != kBundleFormat) {
    return absl::InvalidArgumentError(StrCat(p, " is bundle format ", format, "; this build reads ",
                                             kBundleFormat, ": import it with a newer cairn"));
  }
  const std::string id(h + 12, 16);
  const uint32_t number = GetU32(h + 28);
  if (i == 0) bundle_id_ = id;
  if (id != bundle_id_) {
    return absl::InvalidArgumentError(StrCat(p, " is a volume of another bundle than ", paths_[0]));
  }
  if (number != i + 1) {
    return absl::InvalidArgumentError(StrCat(p, " is volume ", number, " of its bundle, given as ",
                                             i + 1, ": give the volumes in order"));
  }
  left_in_volume_ = static_cast<uint64_t>(st.st_size) - kVolumeHeaderBytes;
  current_ = i;
  return absl::OkStatus();
}

absl::StatusOr<size_t> VolumeReader::Read(char* buf, size_t n) {
  if (buf_pos_ == buf_.size()) {
    while (left_in_volume_ == 0) {
      if (current_ + 1 >= paths_.size()) return 0;
      CAIRN_RETURN_IF_ERROR(OpenVolume(current_ + 1));
    }
    // Large reads: this VM makes every syscall dear, and records are small.
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kReadBuffer, left_in_volume_));
    buf_.resize(want);
    size_t got = 0;
    while (got == 0) {
      ssize_t k = ::read(fd_, buf_.data(), want);
      if (k < 0 && errno == EINTR) continue;
      if (k < 0) return ErrnoStatus(errno, "cannot read " + paths_[current_]);
      if (k == 0) return absl::DataLossError(paths_[current_] + " shrank while it was read");
      got = static_cast<size_t>(k);
    }
    buf_.resize(got);
    buf_pos_ = 0;
    left_in_volume_ -= got;
  }
  const size_t k = std::min(n, buf_.size() - buf_pos_);
  std::memcpy(buf, buf_.data() + buf_pos_, k);
  buf_pos_ += k;
  position_ += k;
  return k;
}

absl::Status VolumeReader::Skip(uint64_t n) {
  const uint64_t buffered = std::min<uint64_t>(n, buf_.size() - buf_pos_);
  buf_pos_ += static_cast<size_t>(buffered);
  position_ += buffered;
  n -= buffered;
  while (n > 0) {
    while (left_in_volume_ == 0) {
      if (current_ + 1 >= paths_.size()) {
        return absl::DataLossError(
            "the bundle ends inside a chunk record: it is cut short (a volume missing?)");
      }
      CAIRN_RETURN_IF_ERROR(OpenVolume(current_ + 1));
    }
    const uint64_t k = std::min(n, left_in_volume_);
    if (::lseek(fd_, static_cast<off_t>(k), SEEK_CUR) < 0) {
      return ErrnoStatus(errno, "cannot seek in " + paths_[current_]);
    }
    left_in_volume_ -= k;
    position_ += k;
    n -= k;
  }
  return absl::OkStatus();
}

// ---- VolumeWriter ----

namespace {
constexpr size_t kWriteBuffer = 4 << 20;
}

// One buffer at a time is written (pwrite, then its writeback started) on a
// thread of its own while the exporter reads, hashes and frames the next:
// the copy into page cache is the other half of an export's CPU time.
class VolumeWriter::BackgroundWrites {
 public:
  BackgroundWrites() : thread_([this] { Loop(); }) {}
  ~BackgroundWrites() {
    {
      absl::MutexLock l(&mu_);
      stop_ = true;
    }
    thread_.join();
  }
  // Takes *buf's bytes to write at `offset` of `fd` (named `name` in
  // errors), leaving *buf empty; waits while the previous buffer is being
  // written. The first write error, once one happened.
  absl::Status Write(int fd, uint64_t offset, std::string* buf, const std::string& name) {
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(
        +[](BackgroundWrites* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) { return !w->busy_; },
        this));
    if (!error_.ok()) return error_;
    job_.swap(*buf);  // *buf gets the last job's buffer, written: its capacity is kept
    buf->clear();
    fd_ = fd;
    offset_ = offset;
    name_ = name;
    busy_ = true;
    return absl::OkStatus();
  }
  // Waits for the buffer being written: the first write error.
  absl::Status Wait() {
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(
        +[](BackgroundWrites* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) { return !w->busy_; },
        this));
    return error_;
  }

 private:
  void Loop() {
    for (;;) {
      int fd;
      uint64_t offset;
      {
        absl::MutexLock l(&mu_);
        mu_.Await(absl::Condition(
            +[](BackgroundWrites* w)
                 ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) { return w->busy_ || w->stop_; },
            this));
        if (!busy_) return;
        fd = fd_;
        offset = offset_;
      }
      // job_ is this thread's while busy_.
      absl::Status st;
      size_t off = 0;
      while (off < job_.size()) {
        ssize_t k =
            PwritePiece(fd, job_.data() + off, job_.size() - off, static_cast<off_t>(offset + off));
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
          absl::MutexLock l(&mu_);
          st = ErrnoStatus(errno, "cannot write " + name_);
          break;
        }
        off += static_cast<size_t>(k);
      }
      // Start the disk writes without waiting for them: the disk works
      // while the next buffer fills, and the volume's fdatasync is short.
      if (st.ok()) {
        (void)::sync_file_range(fd, static_cast<off_t>(offset), static_cast<off_t>(job_.size()),
                                SYNC_FILE_RANGE_WRITE);
      }
      absl::MutexLock l(&mu_);
      if (!st.ok() && error_.ok()) error_ = st;
      busy_ = false;
    }
  }

  absl::Mutex mu_;
  std::string job_;
  int fd_ ABSL_GUARDED_BY(mu_) = -1;
  uint64_t offset_ ABSL_GUARDED_BY(mu_) = 0;
  std::string name_ ABSL_GUARDED_BY(mu_);
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;  // last: starts once the rest is set
};

absl::StatusOr<std::unique_ptr<VolumeWriter>> VolumeWriter::Create(std::string path,
                                                                   uint64_t split_bytes,
                                                                   std::string bundle_id) {
  if (path.empty()) return absl::InvalidArgumentError("--to needs a file name");
  if (split_bytes < (1 << 20) && split_bytes != kNoSplit) {
    return absl::InvalidArgumentError("--split must be at least 1M");
  }
  if (split_bytes == kNoSplit) split_bytes = 0;
  if (bundle_id.size() != 16) return absl::InvalidArgumentError("bundle id must be 16 bytes");
  const std::string first = split_bytes ? VolumeName(path, 1) : path;
  if (Exists(first)) {
    return absl::AlreadyExistsError(first + " exists: remove it or choose another --to");
  }
  std::unique_ptr<VolumeWriter> w(new VolumeWriter());
  w->path_ = std::move(path);
  w->split_ = split_bytes;
  w->bundle_id_ = std::move(bundle_id);
  w->buf_.reserve(kWriteBuffer);
  w->io_ = std::make_unique<BackgroundWrites>();
  CAIRN_RETURN_IF_ERROR(w->StartVolume());
  return w;
}

VolumeWriter::~VolumeWriter() {
  if (!finished_) Abort();
}

absl::Status VolumeWriter::StartVolume() {
  ++volume_;
  const std::string name = split_ ? VolumeName(path_, volume_) : path_;
  partial_ = name + ".partial";
  fd_ = ::open(partial_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) return ErrnoStatus(errno, "cannot create " + partial_);
  char h[kVolumeHeaderBytes];
  std::memcpy(h, kVolumeMagic.data(), 8);
  PutU32(kBundleFormat, h + 8);
  std::memcpy(h + 12, bundle_id_.data(), 16);
  PutU32(volume_, h + 28);
  buf_.assign(h, sizeof(h));
  in_volume_ = sizeof(h);
  return absl::OkStatus();
}

absl::Status VolumeWriter::Flush() {
  if (buf_.empty()) return absl::OkStatus();
  const uint64_t start = in_volume_ - buf_.size();  // where buf_ goes in the volume
  return io_->Write(fd_, start, &buf_, partial_);
}

absl::Status VolumeWriter::EndVolume() {
  CAIRN_RETURN_IF_ERROR(Flush());
  CAIRN_RETURN_IF_ERROR(io_->Wait());
  if (::fdatasync(fd_) != 0) return ErrnoStatus(errno, "cannot sync " + partial_);
  ::close(fd_);
  fd_ = -1;
  const std::string name = partial_.substr(0, partial_.size() - std::strlen(".partial"));
  if (::rename(partial_.c_str(), name.c_str()) != 0) {
    return ErrnoStatus(errno, "cannot rename " + partial_);
  }
  partial_.clear();
  done_.push_back(name);
  return absl::OkStatus();
}

absl::Status VolumeWriter::Write(std::string_view bytes) {
  while (!bytes.empty()) {
    if (split_ != 0 && in_volume_ == split_) {
      CAIRN_RETURN_IF_ERROR(EndVolume());
      CAIRN_RETURN_IF_ERROR(StartVolume());
    }
    size_t k = bytes.size();
    if (split_ != 0) k = static_cast<size_t>(std::min<uint64_t>(k, split_ - in_volume_));
    buf_.append(bytes.data(), k);
    in_volume_ += k;
    written_ += k;
    bytes.remove_prefix(k);
    if (buf_.size() >= kWriteBuffer) CAIRN_RETURN_IF_ERROR(Flush());
  }
  return absl::OkStatus();
}

absl::Status VolumeWriter::Finish() {
  CAIRN_RETURN_IF_ERROR(EndVolume());
  finished_ = true;
  return absl::OkStatus();
}

void VolumeWriter::Abort() {
  if (io_) (void)io_->Wait();  // nothing is written into a file being removed
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (!partial_.empty()) ::unlink(partial_.c_str());
  for (const auto& p : done_) ::unlink(p.c_str());
  done_.clear();
  finished_ = true;
}

// ---- Inventory ----

std::string FormatInventory(const Inventory& inv) {
  std::string out =
      StrCat("cairn-inventory 1\nnode ", inv.node_id, "\ntrust ", inv.trust_version, "\n");
  for (const auto& [name, digest] : inv.releases) {
    out += StrCat("release ", name, " ", digest, "\n");
  }
  return out;
}

absl::StatusOr<Inventory> ParseInventory(std::string_view text) {
  Inventory inv;
  int n = 0;
  bool magic = false;
  for (std::string_view line : Split(text, '\n')) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // edited on Windows
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string_view> f = Split(line, ' ');
    auto bad = [&](std::string_view why) {
      return absl::InvalidArgumentError(StrCat("inventory line ", n, ": ", why));
    };
    if (!magic) {
      if (line != "cairn-inventory 1") {
        return bad("not a Cairn inventory (write one with `cairn-node inventory`)");
      }
      magic = true;
    } else if (f[0] == "node" && f.size() == 2) {
      inv.node_id = std::string(f[1]);
    } else if (f[0] == "trust" && f.size() == 2) {
      if (!ParseInt(f[1], &inv.trust_version)) return bad("trust version is not a number");
    } else if (f[0] == "release" && f.size() == 3) {
      if (!ValidateName(f[1]).ok()) return bad("bad release name");
      if (!ParseDigestName(f[2]).ok()) return bad("bad release digest");
      inv.releases.emplace_back(std::string(f[1]), std::string(f[2]));
    } else {
      return bad("unknown entry");
    }
  }
  if (!magic) return absl::InvalidArgumentError("empty inventory");
  return inv;
}

absl::StatusOr<Inventory> InventoryOf(Repository* repo) {
  Inventory inv;
  inv.node_id = repo->node_id();
  inv.trust_version = repo->trust().root().version();
  CAIRN_ASSIGN_OR_RETURN(auto summary, repo->Summary());
  for (const auto& r : summary.releases()) {
    inv.releases.emplace_back(r.name(), r.manifest_digest());
  }
  return inv;
}

std::string DescribeImport(const cairn::v1::ImportResponse& r) {
  std::string out;
  for (const auto& rel : r.releases()) {
    out += StrCat(rel.already_present() ? "held already " : "imported ", rel.name(), "@",
                  rel.version(), " (", rel.manifest_digest(), ")");
    for (const auto& t : rel.tags()) out += StrCat(" :", t);
    out += "\n";
    for (const auto& n : rel.notes()) out += StrCat("  note: ", n, "\n");
  }
  out += StrCat(r.chunks_stored(), " chunks stored (", r.bytes_stored(), " bytes), ",
                r.chunks_held(), " already held; ", r.bytes_read(), " bundle bytes read");
  if (r.trust_versions_adopted() > 0) {
    out += StrCat("; trust root advanced by ", r.trust_versions_adopted(), " version(s)");
  }
  return out;
}

std::string DescribeExport(const ExportReport& r) {
  std::string out =
      StrCat("exported ", r.releases, " release(s): ", r.chunks, " chunks (", r.chunk_bytes,
             " bytes), ", r.objects, " chunk lists, ", r.trust_roots, " trust roots");
  if (r.chunks_left_out > 0) {
    out += StrCat("; ", r.chunks_left_out, " chunks (", r.bytes_left_out,
                  " bytes) left out: the receiver holds them");
  }
  out += StrCat("\nwrote ", r.bytes_written, " bytes in ", r.volumes.size(), " file(s):");
  for (const auto& v : r.volumes) out += " " + v;
  return out;
}

}  // namespace cairn
