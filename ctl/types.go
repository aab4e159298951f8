package ctl

import "github.com/conclave-lb/conclave/adminapi"

// The admin API's JSON shapes (see docs/API.md) are the server's own, from
// package adminapi. Settings stay raw JSON so that every key the server
// knows survives a round trip through the CLI.
type (
	// Backend is a backend (BBB server) as the admin API shows it: no secret.
	Backend = adminapi.Backend
	// BackendRemoval is the answer to DELETE /api/v1/backends/{ref}.
	BackendRemoval = adminapi.BackendRemoval
	// Frontend is a tenant as the admin API shows it.
	Frontend = adminapi.Frontend
	// Meeting binds a frontend's meeting to the backend that runs it.
	Meeting = adminapi.Meeting
	// Peer is one Raft member as GET /api/v1/peers lists it.
	Peer = adminapi.Peer
	// Recording is one entry of the recordings index.
	Recording = adminapi.Recording
	// AddBackendRequest is the body of POST /api/v1/backends.
	AddBackendRequest = adminapi.AddBackendRequest
	// AddFrontendRequest is the body of POST /api/v1/frontends.
	AddFrontendRequest = adminapi.AddFrontendRequest
	// JoinPeerRequest is the body of POST /api/v1/peers.
	JoinPeerRequest = adminapi.JoinPeerRequest
)
