package promconfig

import (
	"fmt"
	"net"
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// TargetGroup is one entry of a file_sd file.
type TargetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

const meta = "__meta_kubernetes_"

// Discover returns the targets Prometheus' Kubernetes service discovery (role endpointslice)
// finds in one namespace: every address and port of every EndpointSlice that belongs to a
// Service, ready or not, with the slice's, the Service's and (for an endpoint that points at
// a Pod) the Pod's and its container's meta labels. As in Prometheus, nothing is selected here:
// the scrape config's relabelings keep the targets that are the monitor's.
func Discover(services []corev1.Service, slices []discoveryv1.EndpointSlice, pods []corev1.Pod) []TargetGroup {
	svcs := map[string]*corev1.Service{}
	for i := range services {
		svcs[services[i].Namespace+"/"+services[i].Name] = &services[i]
	}
	podsByName := map[string]*corev1.Pod{}
	for i := range pods {
		podsByName[pods[i].Namespace+"/"+pods[i].Name] = &pods[i]
	}
	var out []TargetGroup
	for _, es := range slices {
		svc := svcs[es.Namespace+"/"+es.Labels[discoveryv1.LabelServiceName]]
		if svc == nil {
			continue
		}
		for _, ep := range es.Endpoints {
			var pod *corev1.Pod
			if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
				pod = podsByName[es.Namespace+"/"+ep.TargetRef.Name]
			}
			for _, port := range es.Ports {
				if port.Port == nil {
					continue
				}
				for _, addr := range ep.Addresses {
					labels := map[string]string{
						meta + "namespace":                               es.Namespace,
						meta + "endpointslice_name":                      es.Name,
						meta + "endpointslice_address_type":              string(es.AddressType),
						meta + "endpointslice_port":                      strconv.Itoa(int(*port.Port)),
						meta + "endpointslice_endpoint_conditions_ready": strconv.FormatBool(ep.Conditions.Ready == nil || *ep.Conditions.Ready),
						meta + "service_name":                            svc.Name,
					}
					if port.Name != nil {
						labels[meta+"endpointslice_port_name"] = *port.Name
					}
					if port.Protocol != nil {
						labels[meta+"endpointslice_port_protocol"] = string(*port.Protocol)
					}
					if ep.TargetRef != nil {
						labels[meta+"endpointslice_address_target_kind"] = ep.TargetRef.Kind
						labels[meta+"endpointslice_address_target_name"] = ep.TargetRef.Name
					}
					if ep.NodeName != nil {
						labels[meta+"endpointslice_endpoint_node_name"] = *ep.NodeName
					}
					objectLabels(labels, "endpointslice", es.Labels)
					objectLabels(labels, "service", svc.Labels)
					if pod != nil {
						podLabels(labels, pod, *port.Port)
					}
					out = append(out, TargetGroup{Targets: []string{net.JoinHostPort(addr, strconv.Itoa(int(*port.Port)))}, Labels: labels})
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Targets[0] < out[j].Targets[0] })
	return out
}

func objectLabels(out map[string]string, role string, labels map[string]string) {
	for k, v := range labels {
		out[fmt.Sprintf("%s%s_label_%s", meta, role, sanitize(k))] = v
		out[fmt.Sprintf("%s%s_labelpresent_%s", meta, role, sanitize(k))] = "true"
	}
}

func podLabels(out map[string]string, pod *corev1.Pod, port int32) {
	out[meta+"pod_name"] = pod.Name
	out[meta+"pod_uid"] = string(pod.UID)
	out[meta+"pod_ip"] = pod.Status.PodIP
	out[meta+"pod_node_name"] = pod.Spec.NodeName
	out[meta+"pod_host_ip"] = pod.Status.HostIP
	out[meta+"pod_phase"] = string(pod.Status.Phase)
	ready := "false"
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			ready = "true"
		}
	}
	out[meta+"pod_ready"] = ready
	objectLabels(out, "pod", pod.Labels)
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.ContainerPort == port {
				out[meta+"pod_container_name"] = c.Name
				out[meta+"pod_container_image"] = c.Image
				out[meta+"pod_container_port_name"] = cp.Name
				out[meta+"pod_container_port_number"] = strconv.Itoa(int(cp.ContainerPort))
				out[meta+"pod_container_port_protocol"] = string(cp.Protocol)
			}
		}
	}
}
