package metallb

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Input is MetalLB's configuration, as read from files or from a cluster, and the Services
// whose addresses it handed out.
type Input struct {
	Pools             []IPAddressPool
	L2Advertisements  []L2Advertisement
	BGPAdvertisements []BGPAdvertisement
	Peers             []BGPPeer
	Communities       []Community
	BFDProfiles       []BFDProfile
	Services          []corev1.Service
	// Ignored says, one line each, what was read but is not configuration (MetalLB's status
	// objects, other kinds).
	Ignored []string
}

// AddYAML reads every document of a YAML or JSON stream (Lists included). source names the
// stream in errors.
func (in *Input) AddYAML(r io.Reader, source string) error {
	rd := utilyaml.NewYAMLReader(bufio.NewReader(r))
	for doc := 1; ; doc++ {
		raw, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", source, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		js, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return fmt.Errorf("%s: document %d: %w", source, doc, err)
		}
		if string(bytes.TrimSpace(js)) == "null" {
			continue // a document of comments only
		}
		if err := in.AddJSON(js); err != nil {
			return fmt.Errorf("%s: document %d: %w", source, doc, err)
		}
	}
}

// AddJSON reads one object (or a List of them) in JSON.
func (in *Input) AddJSON(js []byte) error {
	var head struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Items      []json.RawMessage `json:"items"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		return fmt.Errorf("not a Kubernetes object: %w", err)
	}
	if head.Kind == "" || head.APIVersion == "" {
		return fmt.Errorf("not a Kubernetes object: apiVersion and kind are required")
	}
	if strings.HasSuffix(head.Kind, "List") && head.Items != nil {
		for i, item := range head.Items {
			if err := in.AddJSON(item); err != nil {
				return fmt.Errorf("%s items[%d]: %w", head.Kind, i, err)
			}
		}
		return nil
	}
	id := head.Kind + " " + head.Metadata.Name
	if head.Metadata.Namespace != "" {
		id = head.Kind + " " + head.Metadata.Namespace + "/" + head.Metadata.Name
	}
	group, version, _ := strings.Cut(head.APIVersion, "/")
	if group != Group {
		if head.APIVersion == "v1" && head.Kind == "Service" {
			var s corev1.Service
			if err := json.Unmarshal(js, &s); err != nil {
				return fmt.Errorf("%s: %w", id, err)
			}
			in.Services = append(in.Services, s)
			return nil
		}
		if head.APIVersion == "v1" && head.Kind == "ConfigMap" && head.Metadata.Name == "config" {
			in.Ignored = append(in.Ignored, fmt.Sprintf("%s: left out: MetalLB before v0.13 was configured by this ConfigMap; convert it to CRDs with MetalLB's configmaptocrs first", id))
			return nil
		}
		in.Ignored = append(in.Ignored, fmt.Sprintf("%s: left out: not MetalLB configuration", id))
		return nil
	}
	strict := func(v any) error {
		strictErrs, err := sigsjson.UnmarshalStrict(js, v, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
		if err != nil {
			return fmt.Errorf("%s: %w", id, err)
		}
		if len(strictErrs) > 0 {
			msgs := make([]string, len(strictErrs))
			for i, e := range strictErrs {
				msgs[i] = e.Error()
			}
			return fmt.Errorf("%s: %s (not a field of %s %s)", id, strings.Join(msgs, "; "), head.APIVersion, head.Kind)
		}
		return nil
	}
	switch {
	case head.Kind == "IPAddressPool" && version == "v1beta1":
		var o IPAddressPool
		if err := strict(&o); err != nil {
			return err
		}
		in.Pools = append(in.Pools, o)
	case head.Kind == "L2Advertisement" && version == "v1beta1":
		var o L2Advertisement
		if err := strict(&o); err != nil {
			return err
		}
		in.L2Advertisements = append(in.L2Advertisements, o)
	case head.Kind == "BGPAdvertisement" && version == "v1beta1":
		var o BGPAdvertisement
		if err := strict(&o); err != nil {
			return err
		}
		in.BGPAdvertisements = append(in.BGPAdvertisements, o)
	case head.Kind == "BGPPeer" && version == "v1beta2":
		var o BGPPeer
		if err := strict(&o); err != nil {
			return err
		}
		in.Peers = append(in.Peers, o)
	case head.Kind == "BGPPeer" && version == "v1beta1":
		var o peerV1beta1
		if err := strict(&o); err != nil {
			return err
		}
		in.Peers = append(in.Peers, o.upgrade())
	case head.Kind == "Community" && version == "v1beta1":
		var o Community
		if err := strict(&o); err != nil {
			return err
		}
		in.Communities = append(in.Communities, o)
	case head.Kind == "BFDProfile" && version == "v1beta1":
		var o BFDProfile
		if err := strict(&o); err != nil {
			return err
		}
		in.BFDProfiles = append(in.BFDProfiles, o)
	case head.Kind == "ServiceL2Status" || head.Kind == "ServiceBGPStatus":
		in.Ignored = append(in.Ignored, fmt.Sprintf("%s: left out: written by MetalLB's speakers (Fairlead's speakers write ServiceAnnouncements)", id))
	default:
		return fmt.Errorf("%s: %s %s is not a MetalLB v0.13-v0.15 kind", id, head.APIVersion, head.Kind)
	}
	return nil
}

// upgrade reads a v1beta1 BGPPeer as v1beta2 says it: zero timers were "unset".
func (o peerV1beta1) upgrade() BGPPeer {
	p := BGPPeer{Object: o.Object, Status: o.Status}
	s := o.Spec
	p.Spec = PeerSpec{
		MyASN: s.MyASN, PeerASN: s.PeerASN, PeerAddress: s.PeerAddress, SourceAddress: s.SourceAddress,
		PeerPort: s.PeerPort, RouterID: s.RouterID, NodeSelectors: s.NodeSelectors, Password: s.Password,
		BFDProfile: s.BFDProfile, EBGPMultiHop: s.EBGPMultiHop,
	}
	if s.HoldTime.Duration != 0 {
		p.Spec.HoldTime = &s.HoldTime
	}
	if s.KeepaliveTime.Duration != 0 {
		p.Spec.KeepaliveTime = &s.KeepaliveTime
	}
	return p
}
