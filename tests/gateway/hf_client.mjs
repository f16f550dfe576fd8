// Drives the real @huggingface/hub client against a Cairn node's HTTP port
// and compares every byte with the directory that was published.
//   node hf_client.mjs HUB_URL REPO PUBLISHED_DIR CACHE_DIR [MIN_PAGES] [--snapshot-only]
// Exits non-zero, naming the first check that failed. --snapshot-only: just
// snapshotDownload into CACHE_DIR (and check it), printing the folder.
import * as hub from "@huggingface/hub";
import { readFileSync, readdirSync, statSync, realpathSync } from "node:fs";
import { join, relative } from "node:path";

const [hubUrl, repo, dir, cacheDir, minPages = "1", mode = ""] = process.argv.slice(2);
const fail = (msg) => { console.error(`FAIL: ${msg}`); process.exit(1); };
const check = (cond, msg) => { if (!cond) fail(msg); };

function walk(d) {
  const out = [];
  for (const name of readdirSync(d)) {
    const p = join(d, name);
    if (statSync(p).isDirectory()) out.push(...walk(p)); else out.push(relative(dir, p));
  }
  return out.sort();
}
const published = walk(dir);
const bytesOf = (p) => readFileSync(join(dir, p));

// Count the tree pages the client follows.
let treePages = 0;
const countingFetch = (url, init) => {
  if (String(url).includes("/tree/")) treePages++;
  return fetch(url, init);
};

if (mode === "--snapshot-only") {
  const snap = await hub.snapshotDownload({ repo, hubUrl, cacheDir });
  for (const p of published) {
    check(readFileSync(join(snap, p)).equals(bytesOf(p)), `snapshotDownload ${p}: bytes differ`);
  }
  console.log(snap);
  process.exit(0);
}

const info = await hub.modelInfo({ name: repo, hubUrl, additionalFields: ["sha", "siblings"] });
check(info.name === repo, `modelInfo name ${info.name}`);
check(/^[0-9a-f]{40}$/.test(info.sha), `modelInfo sha ${info.sha}`);
check(info.updatedAt instanceof Date && !isNaN(info.updatedAt), "modelInfo updatedAt");
const sibs = info.siblings.map((s) => s.rfilename).sort();
check(JSON.stringify(sibs) === JSON.stringify(published), "modelInfo siblings differ");
console.log(`modelInfo ok: sha ${info.sha}, ${sibs.length} files`);

const listed = [];
for await (const e of hub.listFiles({ repo, hubUrl, recursive: true, fetch: countingFetch })) {
  if (e.type === "file") {
    listed.push(e.path);
    check(e.size === statSync(join(dir, e.path)).size, `listFiles size of ${e.path}`);
    check(/^[0-9a-f]{40}$/.test(e.oid), `listFiles oid of ${e.path}`);
  }
}
listed.sort();
check(JSON.stringify(listed) === JSON.stringify(published), `listFiles: ${listed.length} of ${published.length}`);
check(treePages >= Number(minPages), `listFiles followed ${treePages} pages, want >= ${minPages}`);
console.log(`listFiles ok: ${listed.length} files over ${treePages} pages`);

for (const p of published) {
  const blob = await hub.downloadFile({ repo, path: p, hubUrl });
  check(blob !== null, `downloadFile ${p}: null`);
  const got = Buffer.from(await blob.arrayBuffer());
  check(got.equals(bytesOf(p)), `downloadFile ${p}: bytes differ`);
}
console.log(`downloadFile ok: ${published.length} files byte-exact`);

const first = published[0];
const cached = await hub.downloadFileToCacheDir({ repo, path: first, hubUrl, cacheDir });
check(readFileSync(cached).equals(bytesOf(first)), `downloadFileToCacheDir ${first}`);
console.log(`downloadFileToCacheDir ok: ${cached}`);

const snap = await hub.snapshotDownload({ repo, hubUrl, cacheDir });
check(snap.endsWith(info.sha), `snapshot folder ${snap} is not named by the commit`);
for (const p of published) {
  check(readFileSync(join(snap, p)).equals(bytesOf(p)), `snapshotDownload ${p}: bytes differ`);
}
check(realpathSync(join(snap, first)).includes("/blobs/"), "snapshot files are links into blobs/");
console.log(`snapshotDownload ok: ${snap}`);

check(await hub.fileExists({ repo, path: first, hubUrl }), "fileExists of a published file");
check(!(await hub.fileExists({ repo, path: "no/such/file.bin", hubUrl })), "fileExists of a missing file");
check((await hub.downloadFile({ repo, path: "no/such/file.bin", hubUrl })) === null,
      "downloadFile of a missing file is null");
let missingRepo = null;
try {
  await hub.modelInfo({ name: "nobody/nothing", hubUrl });
} catch (e) {
  missingRepo = e;
}
check(missingRepo && missingRepo.statusCode === 404, `missing repo: ${missingRepo}`);
let missingFileInMissingRepo = null;
try {
  await hub.downloadFile({ repo: "nobody/nothing", path: first, hubUrl });
} catch (e) {
  missingFileInMissingRepo = e;
}
check(missingFileInMissingRepo && missingFileInMissingRepo.statusCode === 404,
      `download from a missing repo: ${missingFileInMissingRepo}`);
console.log("missing file and repo ok");
console.log("ALL OK");
