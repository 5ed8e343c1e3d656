package engines

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	"github.com/tektoncd/triggers/pkg/interceptors"
	"github.com/tektoncd/triggers/pkg/interceptors/cel"
	"github.com/tektoncd/triggers/pkg/interceptors/github"
	"github.com/tektoncd/triggers/pkg/interceptors/gitlab"
	"github.com/tektoncd/triggers/pkg/template"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RenderTrigger does what a Tekton Triggers EventListener's sink does with an
// incoming event for one of its triggers, in this process and with the
// Triggers library's own code, reading the EventListener, TriggerBindings and
// TriggerTemplate from the cluster:
//
//   - the trigger's interceptor chain: each ClusterInterceptor ref (github,
//     gitlab, cel: the core interceptors) runs the core interceptor's Process
//     on a request built like the sink's (body, headers, accumulated
//     extensions, the interceptor's params, TriggerID namespaces/<ns>/triggers/<name>),
//     sent through a JSON round trip as over the wire; secrets are read from the
//     cluster with the Triggers secret getter;
//   - template.ResolveTrigger, ResolveParams and ResolveResources.
//
// It returns the resources the sink would create, or nil and the stopping
// interceptor's response when the chain did not continue. What it leaves out:
// the EventListener Deployment and Service (the sink image is not built) and
// the interceptors' HTTP serving (the core interceptors Deployment).
func (tk *Tekton) RenderTrigger(ctx context.Context, ns, eventListener, trigger string, body []byte, header http.Header) ([]json.RawMessage, *triggersv1.InterceptorResponse, error) {
	el, err := tk.Triggers.TriggersV1beta1().EventListeners(ns).Get(ctx, eventListener, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	var t *triggersv1.Trigger
	for _, et := range el.Spec.Triggers {
		if et.Name != trigger {
			continue
		}
		if et.Template == nil {
			return nil, nil, fmt.Errorf("EventListener %s trigger %s: only inline triggers are supported here", eventListener, trigger)
		}
		t = &triggersv1.Trigger{
			ObjectMeta: metav1.ObjectMeta{Name: et.Name, Namespace: ns},
			Spec: triggersv1.TriggerSpec{
				ServiceAccountName: et.ServiceAccountName,
				Bindings:           et.Bindings,
				Template:           *et.Template,
				Interceptors:       et.Interceptors,
			},
		}
	}
	if t == nil {
		return nil, nil, fmt.Errorf("EventListener %s has no trigger %s", eventListener, trigger)
	}

	sg := interceptors.DefaultSecretGetter(tk.Kube.CoreV1())
	core := map[string]interface {
		Process(context.Context, *triggersv1.InterceptorRequest) *triggersv1.InterceptorResponse
	}{
		"github": github.NewInterceptor(sg),
		"gitlab": gitlab.NewInterceptor(sg),
		"cel":    cel.NewInterceptor(sg),
	}
	req := triggersv1.InterceptorRequest{
		Body:       string(body),
		Header:     header.Clone(),
		Extensions: map[string]any{},
		Context: &triggersv1.TriggerContext{
			EventURL:  "http://el-" + eventListener + "." + ns + ".svc.cluster.local:8080",
			EventID:   template.UUID(),
			TriggerID: fmt.Sprintf("namespaces/%s/triggers/%s", ns, t.Name),
		},
	}
	for _, i := range t.Spec.Interceptors {
		if i.Webhook != nil || i.Ref.Kind != triggersv1.ClusterInterceptorKind {
			return nil, nil, fmt.Errorf("trigger %s: interceptor %s is not a core ClusterInterceptor", t.Name, i.GetName())
		}
		impl, ok := core[i.Ref.Name]
		if !ok {
			return nil, nil, fmt.Errorf("trigger %s: no core interceptor %q", t.Name, i.Ref.Name)
		}
		req.InterceptorParams = interceptors.GetInterceptorParams(i)
		wire, err := json.Marshal(&req)
		if err != nil {
			return nil, nil, err
		}
		var in triggersv1.InterceptorRequest
		if err := json.Unmarshal(wire, &in); err != nil {
			return nil, nil, err
		}
		resp := impl.Process(ctx, &in)
		if wire, err = json.Marshal(resp); err != nil {
			return nil, nil, err
		}
		var out triggersv1.InterceptorResponse
		if err := json.Unmarshal(wire, &out); err != nil {
			return nil, nil, err
		}
		if !out.Continue {
			return nil, &out, nil
		}
		for k, v := range out.Extensions {
			req.Extensions[k] = v
		}
		req.InterceptorParams = map[string]any{}
	}

	rt, err := template.ResolveTrigger(*t,
		func(name string) (*triggersv1.TriggerBinding, error) {
			return tk.Triggers.TriggersV1beta1().TriggerBindings(ns).Get(ctx, name, metav1.GetOptions{})
		},
		func(name string) (*triggersv1.ClusterTriggerBinding, error) {
			return tk.Triggers.TriggersV1beta1().ClusterTriggerBindings().Get(ctx, name, metav1.GetOptions{})
		},
		func(name string) (*triggersv1.TriggerTemplate, error) {
			return tk.Triggers.TriggersV1beta1().TriggerTemplates(ns).Get(ctx, name, metav1.GetOptions{})
		})
	if err != nil {
		return nil, nil, err
	}
	params, err := template.ResolveParams(rt, []byte(req.Body), req.Header, req.Extensions, template.NewTriggerContext(req.Context.EventID))
	if err != nil {
		return nil, nil, err
	}
	return template.ResolveResources(rt.TriggerTemplate, params), &triggersv1.InterceptorResponse{Continue: true, Extensions: req.Extensions}, nil
}
