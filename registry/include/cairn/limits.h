// Every size limit of the protocol, in one place. Nodes, clients and the
// transport all read them from here; a change is a protocol change (see
// docs/protocol.md, "Limits").
#pragma once

#include <cstddef>
#include <cstdint>

namespace cairn {

// ---- Objects (bytes as encoded; larger input is refused before parsing) ----
inline constexpr size_t kMaxManifestBytes = 16 << 20;   // 16 MiB
inline constexpr size_t kMaxEnvelopeBytes = 17 << 20;   // manifest + signatures
inline constexpr size_t kMaxChunkListBytes = 48 << 20;  // ~1.2 M chunks: ~80 GB at 64 KiB
inline constexpr size_t kMaxTagBytes = 64 << 10;        // 64 KiB
inline constexpr size_t kMaxYankBytes = 4 << 10;        // 4 KiB
inline constexpr size_t kMaxYankReasonBytes = 1024;
inline constexpr size_t kMaxTrustRootBytes = 1 << 20;  // 1 MiB
inline constexpr size_t kMaxFiles = 100000;
inline constexpr size_t kMaxPathBytes = 4096;
// One path segment: Linux's NAME_MAX.
inline constexpr size_t kMaxPathSegmentBytes = 255;
inline constexpr size_t kMaxSignatures = 32;
// Files may share chunks and chunk lists, but a release may not expand to
// more than kMaxExpansion times its distinct chunk bytes, plus
// kExpansionSlackBytes: N files naming one list, or a list naming one chunk
// N times, make every node and client that takes it write N copies (issue
// 12 B). Checked when a node admits a release.
inline constexpr uint64_t kMaxExpansion = 64;
inline constexpr uint64_t kExpansionSlackBytes = uint64_t{1} << 30;

// ---- Chunks ----
// The largest chunk any chunk list, store or message may carry, whatever
// chunker parameters made it.
inline constexpr uint32_t kMaxChunkSize = 1024 * 1024;

// ---- gRPC messages ----
// Largest message a node sends (chunk batches and chunk lists). 64 MiB: above
// kMaxChunkListBytes and kMaxChunksPerMessage * kMaxChunkSize.
inline constexpr int kMaxMessageBytes = 64 << 20;
// Largest request a node accepts, whatever the RPC: what a PutChunks batch
// (kBytesPerRequest plus one chunk) or an object part needs. Larger objects
// go in parts (PutObject offset/total_size): a client that declares a request
// and stalls can pin at most this much per stream.
inline constexpr int kMaxRequestBytes = 4 << 20;
// The size of one PutObject part.
inline constexpr size_t kBytesPerPart = 1 << 20;
// Most chunk digests a node accepts in one GetMany / PutChunks message.
inline constexpr int kMaxChunksPerMessage = 64;
// What clients and followers put in one request (<= kMaxChunksPerMessage),
// and the bytes they aim for per batch.
inline constexpr int kChunksPerRequest = 16;
inline constexpr size_t kBytesPerRequest = 1 << 20;

static_assert(kChunksPerRequest <= kMaxChunksPerMessage);
static_assert(kBytesPerRequest + kMaxChunkSize + (64 << 10) <= size_t{kMaxRequestBytes});
static_assert(kBytesPerPart + (64 << 10) <= size_t{kMaxRequestBytes});
static_assert(size_t{kMaxChunksPerMessage} * kMaxChunkSize <= size_t{kMaxMessageBytes});
static_assert(kMaxChunkListBytes < size_t{kMaxMessageBytes});

}  // namespace cairn
