// Package policy holds Tollgate's domain: accounts, users and API tokens,
// their permissions and restrictions, token values and their checksums, and
// the validation every write goes through.
//
// It does no I/O of its own. Storage adapters (package store) and transports
// (package extauthz, the command line) depend on it, never the other way round.
package policy
