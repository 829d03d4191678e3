package admin

// Routes lists the API's method and path pairs, for the test that checks
// them against the OpenAPI document.
func Routes() [][2]string {
	var out [][2]string
	for _, r := range (&Handler{}).routes() {
		out = append(out, [2]string{r.method, r.path})
	}
	return out
}
