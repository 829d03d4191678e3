package anomaly

// HostOf exposes hostOf to the fuzz test.
func HostOf(v string) string { return hostOf(v) }
