package adminapi

// Recording transfers: how an agent (or conclavectl import) ships one
// published recording format — the files BBB wrote under
// <published>/<format>/<recordID>/ — to the cluster's central storage.
// Any peer takes any step (the staged chunks live in the shared store), so
// a transfer survives the agent, the peer and the connection between them.
//
//  1. POST /api/v1/transfers with a TransferOffer (the manifest): the peer
//     answers a TransferStatus naming the chunks it still needs, or State
//     "central" when the copy is already complete.
//  2. PUT /api/v1/transfers/<id>/<file>/<chunk> with the chunk's bytes
//     (exactly ChunkSize, the last of a file shorter) and header
//     X-Content-SHA256 (hex): 204; a chunk whose bytes do not match is
//     refused (422) and not kept.
//  3. POST /api/v1/transfers/<id>/complete: the peer assembles each file,
//     checks its size and SHA-256 against the offer, and only then marks
//     the recording central in the replicated index (200, State "central").
//     A file that does not verify is dropped (422, its chunks are needed
//     again: Missing lists them).
//
// The caller's token must be an agent token for the backend's host:port
// (or an admin token).

// TransferFile is one file of a recording format, relative to its
// directory (slash-separated, no "..", no leading slash).
type TransferFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // hex, lower case
}

// TransferOffer is the manifest an agent offers.
type TransferOffer struct {
	Backend   string         `json:"backend"` // the BBB API URL (or backend ID) that made the recording
	RecordID  string         `json:"record_id"`
	Format    string         `json:"format"` // presentation, video, podcast…
	ChunkSize int64          `json:"chunk_size"`
	Files     []TransferFile `json:"files"`
	// Frontend (admin tokens only) imports a recording the index does not
	// know, one made before Conclave: its entry is made from the
	// metadata.xml among Files, owned by this frontend.
	Frontend string `json:"frontend,omitempty"`
}

// TransferChunk names one chunk: Chunk-th ChunkSize bytes of Files[File].
type TransferChunk struct {
	File  int `json:"file"`
	Chunk int `json:"chunk"`
}

// TransferStatus answers an offer and its completion.
type TransferStatus struct {
	ID    string `json:"id"`    // the transfer's ID, in the chunk and complete URLs
	State string `json:"state"` // "pending" (chunks missing), "staged" (all chunks in), "central" (done)
	// Missing lists the chunks still to send, in order.
	Missing []TransferChunk `json:"missing,omitempty"`
	// Bytes is the recording format's size; Have how much of it is staged.
	Bytes int64 `json:"bytes"`
	Have  int64 `json:"have"`
}

// Transfer limits, checked by the peer on every offer.
const (
	TransferMinChunk    = 64 << 10
	TransferMaxChunk    = 16 << 20
	TransferDefaultSize = 4 << 20
	TransferMaxFiles    = 20000
	TransferMaxPath     = 512
	TransferMaxBytes    = 64 << 30 // one recording format
	// TransferSHA256Header carries a chunk's hex SHA-256.
	TransferSHA256Header = "X-Content-SHA256"
)
