package aws

import (
	"context"
	"maps"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/go-logr/logr"
)

// baseTags are the tags that make a resource this cluster's and this Service's.
func baseTags(cluster, key string) map[string]string {
	return map[string]string{TagCluster: cluster, TagService: key, kubernetesClusterTag(cluster): "owned"}
}

// wantTags are the tags of everything created for the Service: ours and its
// additional-resource-tags (which cannot override ours: the annotation parser refuses them).
func (p *NLB) wantTags(d *nlbSpec) map[string]string {
	t := baseTags(p.opts.ClusterName, d.key)
	maps.Copy(t, d.tags)
	return t
}

func tagList(m map[string]string) []elbtypes.Tag {
	var out []elbtypes.Tag
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, elbtypes.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}

func ec2TagListOf(m map[string]string) []ec2types.Tag {
	var out []ec2types.Tag
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, ec2types.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}

// tagChanges returns the tags to set and the keys to remove to turn have into want. The
// resources are the Service's alone, so a tag nobody wants any more goes, as with the AWS Load
// Balancer Controller; AWS' own (aws:*) stay.
func tagChanges(have, want map[string]string) (set map[string]string, remove []string) {
	set = map[string]string{}
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			set[k] = v
		}
	}
	for _, k := range slices.Sorted(maps.Keys(have)) {
		if _, ok := want[k]; !ok && !strings.HasPrefix(k, "aws:") {
			remove = append(remove, k)
		}
	}
	return set, remove
}

// syncELBTags converges the tags of a load balancer, listener or target group.
func (p *NLB) syncELBTags(ctx context.Context, arn string, have, want map[string]string) error {
	set, remove := tagChanges(have, want)
	if len(set) > 0 {
		if _, err := p.c.ELBv2.AddTags(ctx, &elbv2.AddTagsInput{ResourceArns: []string{arn}, Tags: tagList(set)}); err != nil {
			return wrap(err, "tagging %s", arn)
		}
	}
	if len(remove) > 0 {
		if _, err := p.c.ELBv2.RemoveTags(ctx, &elbv2.RemoveTagsInput{ResourceArns: []string{arn}, TagKeys: remove}); err != nil {
			return wrap(err, "removing tags %v from %s", remove, arn)
		}
	}
	if len(set)+len(remove) > 0 {
		logr.FromContextOrDiscard(ctx).Info("updated tags", "resource", arn, "set", slices.Sorted(maps.Keys(set)), "removed", remove)
	}
	return nil
}

// syncEC2Tags converges the tags of the Service's security group.
func (p *NLB) syncEC2Tags(ctx context.Context, id string, have, want map[string]string) error {
	set, remove := tagChanges(have, want)
	if len(set) > 0 {
		if _, err := p.c.EC2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: ec2TagListOf(set)}); err != nil {
			return wrap(err, "tagging %s", id)
		}
	}
	if len(remove) > 0 {
		var ts []ec2types.Tag
		for _, k := range remove {
			ts = append(ts, ec2types.Tag{Key: aws.String(k)})
		}
		if _, err := p.c.EC2.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{id}, Tags: ts}); err != nil {
			return wrap(err, "removing tags %v from %s", remove, id)
		}
	}
	if len(set)+len(remove) > 0 {
		logr.FromContextOrDiscard(ctx).Info("updated tags", "resource", id, "set", slices.Sorted(maps.Keys(set)), "removed", remove)
	}
	return nil
}
