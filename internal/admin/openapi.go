package admin

import (
	_ "embed"
	"encoding/json"
	"net/http"
)

//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request, _ *principal) error {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPI)
	return nil
}

// jsonRaw passes stored JSON through as it is.
type jsonRaw string

// MarshalJSON implements json.Marshaler.
func (j jsonRaw) MarshalJSON() ([]byte, error) {
	if !json.Valid([]byte(j)) {
		return []byte("{}"), nil
	}
	return []byte(j), nil
}
