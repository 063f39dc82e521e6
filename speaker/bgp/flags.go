package bgp

import (
	"flag"
	"os"
	"strings"
)

// AddFlags registers the speaker's --bgp-* flags, which set SecretNamespace and
// ExtraSecretNamespaces.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.SecretNamespace, "bgp-secret-namespace", envOr("POD_NAMESPACE", "fairlead-system"),
		"Namespace of the Secrets that BGPPeers' passwordSecret name (default $POD_NAMESPACE, else fairlead-system).")
	// A string flag, not a list type: the help text then names its type "string", as it always has.
	fs.StringVar(&o.extraSecretNamespaces, "bgp-extra-secret-namespaces", "",
		"Comma-separated further namespaces a passwordSecret may name (the chart grants read access there: speaker.bgpSecretNamespaces).")
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
