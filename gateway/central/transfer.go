package central

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/auth"
	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/admin"
	"github.com/conclave-lb/conclave/recstore"
)

// Prefix is the transfers' route.
const Prefix = "/api/v1/transfers"

// maxOfferBody bounds an offer's JSON: TransferMaxFiles entries of a path
// and a hash fit.
const maxOfferBody = 8 << 20

// completeTimeout bounds assembling and verifying one recording format:
// ten minutes, plus the time to move its bytes at 20 MiB/s (the store
// reads every chunk and writes every file once).
func completeTimeout(bytes int64) time.Duration {
	return 10*time.Minute + time.Duration(bytes/(20<<20))*time.Second
}

var (
	simpleName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,255}$`)
	formatName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	hexSHA256  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	transferID = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

// offer is an accepted TransferOffer with what was resolved from it.
type offer struct {
	adminapi.TransferOffer
	BackendID string `json:"backend_id"`
	id        string
}

func (o *offer) chunks(file int) int {
	size := o.Files[file].Size
	if size == 0 {
		return 0
	}
	return int((size + o.ChunkSize - 1) / o.ChunkSize)
}

func (o *offer) chunkLen(file, chunk int) int64 {
	return min(o.ChunkSize, o.Files[file].Size-int64(chunk)*o.ChunkSize)
}

func (o *offer) bytes() int64 {
	var n int64
	for _, f := range o.Files {
		n += f.Size
	}
	return n
}

// chunkKey names a staged chunk with its SHA-256, so that completing can
// tell which chunk went bad at rest and ask for that one alone.
func chunkKey(id string, file, chunk int, sum string) string {
	return "staging/" + id + "/" + strconv.Itoa(file) + "." + strconv.Itoa(chunk) + "." + sum
}

// stagedChunk is a chunk found in the store.
type stagedChunk struct {
	key, sum string
	size     int64
}

// staged lists a transfer's chunks in the store by "file.chunk".
func (c *Central) staged(ctx context.Context, id string) (map[string]stagedChunk, error) {
	list, err := c.store.List(ctx, "staging/"+id+"/", 1<<20)
	if err != nil {
		return nil, err
	}
	out := make(map[string]stagedChunk, len(list))
	for _, s := range list {
		name := strings.TrimPrefix(s.Key, "staging/"+id+"/")
		i := strings.LastIndexByte(name, '.')
		if i < 0 || !hexSHA256.MatchString(name[i+1:]) {
			continue // offer.json
		}
		out[name[:i]] = stagedChunk{key: s.Key, sum: name[i+1:], size: s.Size}
	}
	return out, nil
}

func chunkName(file, chunk int) string { return strconv.Itoa(file) + "." + strconv.Itoa(chunk) }

// checkOffer bounds and cleans an offer; an attacker writes it.
func checkOffer(o *adminapi.TransferOffer) error {
	switch {
	case !simpleName.MatchString(o.RecordID):
		return errors.New("record_id: want 1-256 of [A-Za-z0-9._-]")
	case !formatName.MatchString(o.Format):
		return errors.New("format: want 1-64 of [a-z0-9_-]")
	case o.ChunkSize < adminapi.TransferMinChunk || o.ChunkSize > adminapi.TransferMaxChunk:
		return fmt.Errorf("chunk_size: want %d to %d", adminapi.TransferMinChunk, adminapi.TransferMaxChunk)
	case len(o.Files) == 0 || len(o.Files) > adminapi.TransferMaxFiles:
		return fmt.Errorf("files: want 1 to %d", adminapi.TransferMaxFiles)
	}
	seen := make(map[string]bool, len(o.Files))
	var total int64
	for i, f := range o.Files {
		if len(f.Path) > adminapi.TransferMaxPath || !recstore.ValidKey(f.Path) {
			return fmt.Errorf("files[%d]: path %.80q is not a clean relative path of at most %d bytes", i, f.Path, adminapi.TransferMaxPath)
		}
		if seen[f.Path] {
			return fmt.Errorf("files[%d]: path %.80q twice", i, f.Path)
		}
		seen[f.Path] = true
		if f.Size < 0 || f.Size > adminapi.TransferMaxBytes || !hexSHA256.MatchString(f.SHA256) {
			return fmt.Errorf("files[%d]: want a size of 0 to %d and a lower-case hex SHA-256", i, int64(adminapi.TransferMaxBytes))
		}
		if total += f.Size; total > adminapi.TransferMaxBytes {
			return fmt.Errorf("files: over %d bytes in all", int64(adminapi.TransferMaxBytes))
		}
	}
	return nil
}

// offerID names a transfer by what it ships: the same files offered again
// (the agent restarted, or asks another peer) are the same transfer.
func offerID(o *adminapi.TransferOffer) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%s\x00%s\x00", o.RecordID, o.Format, o.ChunkSize, o.Backend, o.Frontend)
	for _, f := range o.Files {
		fmt.Fprintf(h, "%s\x00%d\x00%s\x00", f.Path, f.Size, f.SHA256)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// ServeTransfer routes /api/v1/transfers...
func (c *Central) ServeTransfer(ctx *fasthttp.RequestCtx) {
	claims, ok := c.req.Authorize(ctx, auth.ScopeAgent)
	if !ok {
		if c.req.HasBody(ctx) {
			c.req.RefuseUnread(ctx)
		}
		return
	}
	if !c.Enabled() {
		if c.req.HasBody(ctx) {
			c.req.RefuseUnread(ctx)
		}
		admin.WriteError(ctx, 409, "unavailable", "this cluster has no central recordings store (conclaved --recordings-store)")
		return
	}
	rest := strings.Trim(strings.TrimPrefix(string(ctx.Path()), Prefix), "/")
	parts := strings.Split(rest, "/")
	method := string(ctx.Method())
	switch {
	case rest == "" && method == "POST":
		c.serveOffer(ctx, claims)
	case len(parts) == 3 && method == "PUT":
		c.serveChunk(ctx, claims, parts[0], parts[1], parts[2])
	case len(parts) == 2 && parts[1] == "complete" && method == "POST":
		c.serveComplete(ctx, claims, parts[0])
	default:
		if c.req.HasBody(ctx) {
			c.req.RefuseUnread(ctx)
		}
		admin.WriteError(ctx, 404, "not_found", "no such transfer route")
	}
}

func (c *Central) serveOffer(ctx *fasthttp.RequestCtx, claims *auth.Claims) {
	body, release, ok := c.req.ReadBody(ctx, maxOfferBody)
	if !ok {
		return
	}
	defer release()
	var in adminapi.TransferOffer
	if err := json.Unmarshal(body, &in); err != nil {
		admin.WriteError(ctx, 400, "invalid", "the offer is not a transfer offer: "+err.Error())
		return
	}
	if err := checkOffer(&in); err != nil {
		admin.WriteError(ctx, 400, "invalid", err.Error())
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, ok := c.findBackend(rctx, in.Backend)
	if !ok {
		admin.WriteError(ctx, 404, "not_found", "no backend "+in.Backend)
		return
	}
	if !claims.HasScope(auth.ScopeAdmin) && !auth.AgentMayChange(claims.Subject, b.URL) {
		admin.WriteError(ctx, 403, "forbidden", "an agent token ships its own node's recordings only (subject host:port = the backend URL's)")
		return
	}
	rec, ok := c.recordingOf(rctx, &b, in.RecordID)
	if in.Frontend != "" {
		if !c.importable(ctx, claims, &in, &b, ok) {
			return
		}
	} else if !ok {
		admin.WriteError(ctx, 409, "conflict", "the index has no recording "+in.RecordID+" of backend "+b.ID+" yet; retry later")
		return
	}
	o := &offer{TransferOffer: in, BackendID: b.ID, id: offerID(&in)}
	st := adminapi.TransferStatus{ID: o.id, Bytes: o.bytes()}
	if cc, done := rec.CentralFormat(in.Format); ok && done && c.sameManifest(rctx, o, cc.Version) {
		st.State, st.Have = "central", st.Bytes
		admin.WriteJSON(ctx, 200, st)
		return
	}
	if err := c.putOffer(rctx, o); err != nil {
		c.storeFailed(ctx, "saving the offer", err)
		return
	}
	if _, err := c.status(rctx, o, &st); err != nil {
		c.storeFailed(ctx, "listing staged chunks", err)
		return
	}
	admin.WriteJSON(ctx, 200, st)
}

// importable checks an import of a recording the index may not know
// (offer.Frontend): admin tokens only, a frontend that exists, a
// metadata.xml to make the entry from, and no entry of another backend.
func (c *Central) importable(ctx *fasthttp.RequestCtx, claims *auth.Claims, in *adminapi.TransferOffer, b *fsm.Backend, known bool) bool {
	if !claims.HasScope(auth.ScopeAdmin) {
		admin.WriteError(ctx, 403, "forbidden", "importing recordings into a frontend needs an admin token")
		return false
	}
	if _, ok := c.cluster.FSM().Frontend(in.Frontend); !ok {
		admin.WriteError(ctx, 404, "not_found", "no frontend "+in.Frontend)
		return false
	}
	if _, ok := c.cluster.FSM().Recording(in.RecordID); ok && !known {
		admin.WriteError(ctx, 409, "conflict", "recording "+in.RecordID+" is another backend's in the index")
		return false
	}
	for _, f := range in.Files {
		if f.Path == "metadata.xml" {
			return true
		}
	}
	admin.WriteError(ctx, 400, "invalid", "an imported recording needs its metadata.xml")
	return false
}

// findBackend resolves an ID, URL or host, confirming a miss with a
// consistent read (the backend may have been added a moment ago).
func (c *Central) findBackend(ctx context.Context, ref string) (fsm.Backend, bool) {
	b, ok := c.cluster.FSM().FindBackend(ref)
	if !ok && c.cluster.ConsistentRead(ctx) == nil {
		b, ok = c.cluster.FSM().FindBackend(ref)
	}
	return b, ok
}

// recordingOf finds a recording of backend b in the index, asking the
// node once when the index does not know it yet.
func (c *Central) recordingOf(ctx context.Context, b *fsm.Backend, id string) (fsm.Recording, bool) {
	rec, ok := c.cluster.FSM().Recording(id)
	if !ok && c.cfg.SyncRecordings != nil {
		if err := c.cfg.SyncRecordings(b, []string{id}); err != nil {
			c.log.Info("recording unknown to the index and its node did not answer", "record_id", id, "backend", b.ID, "err", err)
		}
		rec, ok = c.cluster.FSM().Recording(id)
	}
	return rec, ok && rec.BackendID == b.ID
}

// sameManifest reports whether the copy in use (version) holds o's files.
func (c *Central) sameManifest(ctx context.Context, o *offer, version string) bool {
	r, _, err := c.store.Get(ctx, manifestKey(o.Format, o.RecordID, version), 0, -1)
	if err != nil {
		return false
	}
	defer r.Close()
	var m offer
	if json.NewDecoder(io.LimitReader(r, maxOfferBody)).Decode(&m) != nil {
		return false
	}
	return sameFiles(m.Files, o.Files)
}

// sameFiles reports whether two manifests list the same files: however
// the backend was named or the chunks cut, the copy is the same.
func sameFiles(a, b []adminapi.TransferFile) bool {
	if len(a) != len(b) {
		return false
	}
	byPath := make(map[string]adminapi.TransferFile, len(a))
	for _, f := range a {
		byPath[f.Path] = f
	}
	for _, f := range b {
		if byPath[f.Path] != f {
			return false
		}
	}
	return true
}

func (c *Central) putOffer(ctx context.Context, o *offer) error {
	// The store, not this peer's memory, says whether the offer is there:
	// another peer's sweep may have removed it.
	if _, err := c.store.Stat(ctx, "staging/"+o.id+"/offer.json"); err != nil {
		data, _ := json.Marshal(o)
		if err := c.store.Put(ctx, "staging/"+o.id+"/offer.json", bytes.NewReader(data), int64(len(data))); err != nil {
			return err
		}
	}
	c.remember(o)
	return nil
}

// remember keeps recent offers of a modest size in memory (the store has
// them all): at most maxCachedOffers of at most maxCachedFiles files, a few
// tens of MiB whatever offers a caller makes.
func (c *Central) remember(o *offer) {
	if len(o.Files) > maxCachedFiles {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.offers) >= maxCachedOffers {
		for k := range c.offers {
			delete(c.offers, k)
			break
		}
	}
	c.offers[o.id] = o
}

const (
	maxCachedOffers = 64
	maxCachedFiles  = 1000
)

// loadOffer finds a transfer's offer: offered to this peer, or to another.
func (c *Central) loadOffer(ctx context.Context, id string) (*offer, error) {
	if !transferID.MatchString(id) {
		return nil, recstore.ErrNotFound
	}
	c.mu.Lock()
	o := c.offers[id]
	c.mu.Unlock()
	if o != nil {
		return o, nil
	}
	r, _, err := c.store.Get(ctx, "staging/"+id+"/offer.json", 0, -1)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	o = &offer{}
	if err := json.NewDecoder(io.LimitReader(r, maxOfferBody)).Decode(o); err != nil {
		return nil, err
	}
	if checkOffer(&o.TransferOffer) != nil || offerID(&o.TransferOffer) != id {
		return nil, errors.New("the staged offer does not match its ID")
	}
	o.id = id
	c.remember(o)
	return o, nil
}

// status fills in which chunks are still missing, from the store, and
// returns the staged chunks it listed.
func (c *Central) status(ctx context.Context, o *offer, st *adminapi.TransferStatus) (map[string]stagedChunk, error) {
	have, err := c.staged(ctx, o.id)
	if err != nil {
		return nil, err
	}
	st.Missing, st.Have = nil, 0
	for f := range o.Files {
		for k := 0; k < o.chunks(f); k++ {
			if sc, ok := have[chunkName(f, k)]; ok && sc.size == o.chunkLen(f, k) {
				st.Have += sc.size
			} else {
				st.Missing = append(st.Missing, adminapi.TransferChunk{File: f, Chunk: k})
			}
		}
	}
	st.State = "pending"
	if len(st.Missing) == 0 {
		st.State = "staged"
	}
	c.mu.Lock()
	if _, ok := c.pending[o.id]; ok || len(c.pending) < maxPending {
		c.pending[o.id] = st.Bytes - st.Have
	}
	c.mu.Unlock()
	return have, nil
}

// maxPending bounds the transfers the progress gauge follows.
const maxPending = 1024

// mayReceive counts the bytes a transfer sent this peer and refuses past
// twice the offer's size (chunks sent again after a failed check
// included): a token holder re-sending chunks cannot fill the store.
func (c *Central) mayReceive(id string, o *offer, n int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	got, ok := c.received[id]
	if !ok && len(c.received) >= maxPending {
		for k := range c.received {
			delete(c.received, k)
			break
		}
	}
	if got+n > 2*o.bytes()+o.ChunkSize {
		return false
	}
	c.received[id] = got + n
	return true
}

// mayShip checks that the caller may ship offer o's recording.
func (c *Central) mayShip(ctx *fasthttp.RequestCtx, claims *auth.Claims, o *offer) bool {
	if claims.HasScope(auth.ScopeAdmin) {
		return true
	}
	b, ok := c.cluster.FSM().Backend(o.BackendID)
	if ok && auth.AgentMayChange(claims.Subject, b.URL) {
		return true
	}
	admin.WriteError(ctx, 403, "forbidden", "an agent token ships its own node's recordings only")
	return false
}

func (c *Central) serveChunk(ctx *fasthttp.RequestCtx, claims *auth.Claims, id, fileS, chunkS string) {
	rctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o, err := c.loadOffer(rctx, id)
	if err != nil {
		c.req.RefuseUnread(ctx)
		admin.WriteError(ctx, 404, "not_found", "no transfer "+id+": offer it first")
		return
	}
	if !c.mayShip(ctx, claims, o) {
		c.req.RefuseUnread(ctx)
		return
	}
	file, err1 := strconv.Atoi(fileS)
	chunk, err2 := strconv.Atoi(chunkS)
	if err1 != nil || err2 != nil || file < 0 || file >= len(o.Files) || chunk < 0 || chunk >= o.chunks(file) {
		c.req.RefuseUnread(ctx)
		admin.WriteError(ctx, 400, "invalid", "no such chunk in this transfer")
		return
	}
	want := o.chunkLen(file, chunk)
	sum := strings.ToLower(string(ctx.Request.Header.Peek(adminapi.TransferSHA256Header)))
	if !hexSHA256.MatchString(sum) || int64(ctx.Request.Header.ContentLength()) != want {
		c.req.RefuseUnread(ctx)
		admin.WriteError(ctx, 400, "invalid", fmt.Sprintf("a chunk needs Content-Length %d and %s", want, adminapi.TransferSHA256Header))
		return
	}
	if !c.mayReceive(id, o, want) {
		c.req.RefuseUnread(ctx)
		admin.WriteError(ctx, 429, "too_many", "this transfer has been sent twice its size to this peer already; offer it again later")
		return
	}
	body, release, ok := c.req.ReadBody(ctx, int(want))
	if !ok {
		return
	}
	defer release()
	got := sha256.Sum256(body)
	if int64(len(body)) != want || hex.EncodeToString(got[:]) != sum {
		admin.WriteError(ctx, 422, "invalid", "the chunk's bytes do not match its length or SHA-256; it was not kept")
		return
	}
	if err := c.store.Put(rctx, chunkKey(id, file, chunk, sum), bytes.NewReader(body), want); err != nil {
		c.storeFailed(ctx, "storing a chunk", err)
		return
	}
	c.m.received.Add(float64(want))
	c.mu.Lock()
	if p, ok := c.pending[id]; ok {
		c.pending[id] = max(p-want, 0)
	}
	c.mu.Unlock()
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

func (c *Central) serveComplete(ctx *fasthttp.RequestCtx, claims *auth.Claims, id string) {
	if c.req.HasBody(ctx) {
		c.req.RefuseUnread(ctx)
		admin.WriteError(ctx, 400, "invalid", "complete takes no body")
		return
	}
	lctx, lcancel := context.WithTimeout(context.Background(), 30*time.Second)
	o, err := c.loadOffer(lctx, id)
	lcancel()
	if err != nil {
		admin.WriteError(ctx, 404, "not_found", "no transfer "+id+": offer it first")
		return
	}
	if !c.mayShip(ctx, claims, o) {
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), completeTimeout(o.bytes()))
	defer cancel()
	st := adminapi.TransferStatus{ID: id, Bytes: o.bytes()}
	have, err := c.status(rctx, o, &st)
	if err != nil {
		c.storeFailed(ctx, "listing staged chunks", err)
		return
	}
	if len(st.Missing) > 0 {
		admin.WriteJSON(ctx, 409, st)
		return
	}
	var bad []string // staged chunks to drop: they are sent again
	for f := range o.Files {
		if badChunks, err := c.assemble(rctx, o, f, have); len(badChunks) > 0 {
			bad = append(bad, badChunks...)
		} else if err != nil {
			c.storeFailed(ctx, "assembling "+o.Files[f].Path, err)
			return
		}
	}
	if len(bad) > 0 {
		for _, key := range bad {
			_ = c.store.Delete(rctx, key)
		}
		c.m.transfers.WithLabelValues("corrupt").Inc()
		c.log.Warn("recording transfer failed verification; the bad chunks are asked for again",
			"record_id", o.RecordID, "format", o.Format, "chunks", len(bad))
		_, _ = c.status(rctx, o, &st)
		admin.WriteJSON(ctx, 422, st)
		return
	}
	if o.Frontend != "" {
		if err := c.indexImported(rctx, o); err != nil {
			c.log.Warn("imported recording not indexed", "record_id", o.RecordID, "format", o.Format, "err", err)
			admin.WriteError(ctx, 422, "invalid", "the recording's metadata.xml cannot make its index entry: "+err.Error())
			return
		}
	}
	manifest, _ := json.Marshal(o)
	if err := c.store.Put(rctx, manifestKey(o.Format, o.RecordID, id), bytes.NewReader(manifest), int64(len(manifest))); err != nil {
		c.storeFailed(ctx, "saving the manifest", err)
		return
	}
	res, err := c.cluster.Apply(rctx, &fsm.MarkCentral{RecordID: o.RecordID,
		Copy: fsm.CentralCopy{Format: o.Format, Bytes: st.Bytes, Files: len(o.Files), Version: id}})
	if err == nil && res.Error != nil {
		err = res.Error
	}
	if err != nil {
		admin.WriteError(ctx, 503, "unavailable", "the copy is complete but the index could not note it: "+err.Error()+"; complete again")
		return
	}
	if res.PreviousCopy != "" {
		// The copy this one replaced, named by the log: two transfers of
		// one format completing at once each delete only what they replaced.
		if err := c.deleteCopy(rctx, o.Format, o.RecordID, res.PreviousCopy); err != nil {
			c.log.Warn("replaced central copy not deleted", "record_id", o.RecordID, "format", o.Format, "err", err)
		}
	}
	_ = c.store.DeletePrefix(rctx, "staging/"+id+"/")
	c.mu.Lock()
	delete(c.pending, id)
	delete(c.offers, id)
	delete(c.received, id)
	c.mu.Unlock()
	c.m.transfers.WithLabelValues("central").Inc()
	c.log.Info("recording copied to central storage", "record_id", o.RecordID, "format", o.Format,
		"files", len(o.Files), "bytes", st.Bytes, "backend", o.BackendID)
	st.State, st.Missing, st.Have = "central", nil, st.Bytes
	admin.WriteJSON(ctx, 200, st)
}

var errCorrupt = errors.New("central: a file does not match its size or SHA-256")

// assemble writes file f from its staged chunks to its published place,
// returning the chunks that did not verify. Each chunk is checked against
// the hash it arrived with, the file against the offer's, on the bytes'
// way into the store; the last bytes are held back until the file's hash
// matched, so a file that does not verify fails its Put, which leaves
// nothing: a corrupt copy is never visible.
func (c *Central) assemble(ctx context.Context, o *offer, f int, have map[string]stagedChunk) ([]string, error) {
	file := o.Files[f]
	v := &verifier{want: file.SHA256, size: file.Size, h: sha256.New()}
	var bad []string
	v.next = func(k int) (io.Reader, func() bool, error) {
		sc, ok := have[chunkName(f, k)]
		if k >= o.chunks(f) || !ok || sc.size != o.chunkLen(f, k) {
			return nil, nil, errCorrupt // listed as missing by status
		}
		r, _, err := c.store.Get(ctx, sc.key, 0, -1)
		if errors.Is(err, recstore.ErrNotFound) {
			return nil, nil, errCorrupt
		}
		if err != nil {
			return nil, nil, err
		}
		h := sha256.New()
		v.closeCur = func() { r.Close() }
		return io.TeeReader(io.LimitReader(r, sc.size), h), func() bool {
			r.Close()
			if hex.EncodeToString(h.Sum(nil)) != sc.sum {
				bad = append(bad, sc.key)
				return false
			}
			return true
		}, nil
	}
	err := c.store.Put(ctx, publishedKey(o.Format, o.RecordID, o.id, file.Path), v, file.Size)
	v.abort()
	if v.corrupt && len(bad) == 0 {
		// Every chunk matched the hash it came with, yet the file does not
		// match the offer: the agent's manifest was wrong. Start it over.
		for k := 0; k < o.chunks(f); k++ {
			if sc, ok := have[chunkName(f, k)]; ok {
				bad = append(bad, sc.key)
			}
		}
	}
	if len(bad) > 0 {
		return bad, errCorrupt
	}
	if err == nil && v.n != file.Size {
		return nil, errCorrupt
	}
	return nil, err
}

// verifier reads a file's chunks in order, hashing the file; a chunk that
// does not match its own hash, or a file that does not match the offer's,
// ends the read with errCorrupt before the last byte is handed over.
type verifier struct {
	next     func(chunk int) (io.Reader, func() bool, error)
	cur      io.Reader
	closeCur func()      // closes the current chunk's reader unchecked
	done     func() bool // checks the current chunk once read
	chunk    int
	want     string
	size, n  int64
	h        hash.Hash
	corrupt  bool
}

// abort closes a chunk left open when the store stopped reading early.
func (v *verifier) abort() {
	if v.cur != nil && v.closeCur != nil {
		v.closeCur()
		v.cur = nil
	}
}

func (v *verifier) fail() (int, error) {
	v.corrupt = true
	return 0, errCorrupt
}

func (v *verifier) Read(p []byte) (int, error) {
	for {
		if v.cur == nil {
			if v.n == v.size {
				if hex.EncodeToString(v.h.Sum(nil)) != v.want {
					return v.fail()
				}
				return 0, io.EOF
			}
			r, done, err := v.next(v.chunk)
			if errors.Is(err, errCorrupt) {
				return v.fail()
			}
			if err != nil {
				return 0, err
			}
			v.cur, v.done, v.chunk = r, done, v.chunk+1
		}
		n, err := v.cur.Read(p)
		v.h.Write(p[:n])
		v.n += int64(n)
		if err != nil && err != io.EOF {
			return 0, err
		}
		if err == io.EOF || v.n == v.size {
			// The chunk is over (its reader is limited to its size, so at
			// the file's last byte its hash has every byte), or these are
			// the file's last bytes: check before handing them over.
			v.cur = nil
			if !v.done() {
				return v.fail()
			}
			if v.n == v.size && hex.EncodeToString(v.h.Sum(nil)) != v.want {
				return v.fail()
			}
		}
		if n > 0 {
			return n, nil
		}
	}
}

func (c *Central) storeFailed(ctx *fasthttp.RequestCtx, what string, err error) {
	c.log.Warn("central recordings store failed", "step", what, "store", c.store.String(), "err", err)
	admin.WriteError(ctx, 503, "unavailable", "central storage failed while "+what+"; retry")
}
