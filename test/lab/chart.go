package lab

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	"helm.sh/helm/v4/pkg/kube"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/fairlead-lb/fairlead/test/images"
)

// With kubelet nodes, Fairlead is installed as a user installs it: Helm's install action (what
// `helm install` runs) puts charts/fairlead into SpeakerNamespace, its CRDs included, and the
// controller Deployment and the speaker DaemonSet run as Pods from the image the lab built and
// imported into every node's containerd. Nothing else proxies Services: there is no kube-proxy.

// Release is the lab's Helm release of Fairlead.
const Release = "fairlead"

// chartValues are the values the lab installs the chart with: the image by the name it was
// imported under (never pulled), every speaker component, the proxy configured as kube-proxy
// would be for the lab's networks, and the apiserver's own address for the speakers, which
// must reach it before their proxy makes the `kubernetes` Service's ClusterIP work.
func (l *Lab) chartValues() map[string]any {
	repo, tag, _ := strings.Cut(images.FairleadRef, ":")
	return map[string]any{
		"image": map[string]any{"repository": repo, "tag": tag, "pullPolicy": "Never"},
		"speaker": map[string]any{
			"l2": true, "bgp": true, "proxy": !l.kubeProxy(),
			"clusterCIDR":       podCIDRs,
			"nodePortAddresses": LANv4 + "," + LANv6,
			"kubeAPIServer":     map[string]any{"host": CPv4, "port": apiPortNumber()},
		},
	}
}

func apiPortNumber() int {
	n, _ := strconv.Atoi(apiPort)
	return n
}

// chartDir is the chart the lab installs: the directory that holds the CRDs it was given.
func (l *Lab) chartDir() string { return filepath.Dir(l.CRDs) }

// renderChartFiles renders the chart's templates for vals, checked against its schema, as the
// lab's release: by file name, as `helm template` would print them.
func renderChartFiles(chartDir string, vals map[string]any) (map[string]string, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return nil, fmt.Errorf("loading the chart: %w", err)
	}
	rv, err := util.ToRenderValuesWithSchemaValidation(ch, vals,
		common.ReleaseOptions{Name: Release, Namespace: SpeakerNamespace, IsInstall: true, Revision: 1},
		common.DefaultCapabilities, false)
	if err != nil {
		return nil, err
	}
	return engine.Render(ch, rv)
}

// installChart installs the chart with Helm's library and waits until the controller's and the
// speakers' Pods are Ready.
func (l *Lab) installChart(ctx context.Context, cs kubernetes.Interface, timeout time.Duration) error {
	ch, err := loader.Load(l.chartDir())
	if err != nil {
		return fmt.Errorf("loading the chart: %w", err)
	}
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = ptr.To(l.Kubeconfig())
	flags.Namespace = ptr.To(SpeakerNamespace)
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(slog.NewTextHandler(io.Discard, nil)))
	if err := cfg.Init(flags, SpeakerNamespace, "secret"); err != nil {
		return err
	}
	in := action.NewInstall(cfg)
	in.ReleaseName, in.Namespace, in.CreateNamespace = Release, SpeakerNamespace, true
	in.WaitStrategy = kube.HookOnlyStrategy
	if _, err := in.RunWithContext(ctx, ch, l.chartValues()); err != nil {
		return fmt.Errorf("helm install %s %s: %w", Release, l.chartDir(), err)
	}
	return waitUntil(timeout, func() error { return chartReady(ctx, cs) })
}

// chartReady says what is not Ready yet of the release's Deployment and DaemonSet.
func chartReady(ctx context.Context, cs kubernetes.Interface) error {
	deps, err := cs.AppsV1().Deployments(SpeakerNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	dss, err := cs.AppsV1().DaemonSets(SpeakerNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	if len(deps.Items) == 0 || len(dss.Items) == 0 {
		return fmt.Errorf("the release has %d Deployments and %d DaemonSets", len(deps.Items), len(dss.Items))
	}
	for _, d := range deps.Items {
		if want := ptr.Deref(d.Spec.Replicas, 1); d.Status.ReadyReplicas < want {
			return fmt.Errorf("deployment %s: %d of %d Pods Ready", d.Name, d.Status.ReadyReplicas, want)
		}
	}
	for _, d := range dss.Items {
		if d.Status.DesiredNumberScheduled == 0 || d.Status.NumberReady < d.Status.DesiredNumberScheduled {
			return fmt.Errorf("daemonset %s: %d of %d Pods Ready", d.Name, d.Status.NumberReady, d.Status.DesiredNumberScheduled)
		}
	}
	return nil
}
