// Package e2e runs Fairlead's end-to-end scenarios on a lab of its own (test/lab): the real
// control plane, three node namespaces running fairlead-speaker (layer 2, BGP, proxy) and lab
// agents, an FRR router with a client behind it and a client on the nodes' LAN. Every test
// asserts what the clients get over the wire and what the kernels and the router hold.
//
// The lab's namespaces are named fle2e-<pid>-* and its state is in /run/fairlead-e2e-<pid>
// (lab.Suite): a user's `make lab` and other suites go on undisturbed beside it.
package e2e

import (
	"os"
	"testing"

	"github.com/fairlead-lb/fairlead/test/lab"
)

// The lab every test uses (set in the child process that runs the tests).
var theLab *lab.Lab

// Lab agents, not kubelets: the scenarios are about Fairlead, and agents come up in seconds
// (and are killed and restarted by the failover test).
var suite = lab.Suite{Name: "e2e", NodeMode: lab.AgentNodes, K8s: "kube-apiserver etcd kube-controller-manager kubectl"}

func TestMain(m *testing.M) {
	os.Exit(suite.Main(m, func(l *lab.Lab) error {
		theLab = l
		return connect()
	}))
}
