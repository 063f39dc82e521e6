// Package scheme is the one runtime.Scheme every Fairlead client uses: client-go's types and
// Fairlead's. It lives beside the API, not in controllers/, so that the CCM, the tests' control
// plane and the lab can build a client without importing the reconcilers (and the AWS SDK
// behind them).
package scheme

import (
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
)

// New knows client-go's types and Fairlead's.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}
