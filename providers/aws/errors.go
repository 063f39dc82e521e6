package aws

import (
	"errors"
	"fmt"

	"github.com/aws/smithy-go"

	"github.com/fairlead-lb/fairlead/providers"
)

// deniedCodes are the error codes AWS APIs answer when the caller's policy forbids the call.
var deniedCodes = map[string]bool{
	"AccessDenied":                true,
	"AccessDeniedException":       true,
	"UnauthorizedOperation":       true, // EC2
	"AuthFailure":                 true, // EC2: bad or expired credentials
	"InvalidClientTokenId":        true,
	"UnrecognizedClientException": true,
	"ExpiredToken":                true,
}

// missingCodes are answers saying something the Service names (a certificate, security policy
// or Elastic IP) does not exist. It is fixed outside the Service (a certificate imported or
// validated, an address allocated), so it is retried, with the work queue's backoff.
var missingCodes = map[string]bool{
	"CertificateNotFound":          true,
	"CertificateNotFoundException": true, // moto 5.2.1's spelling of the same
	"SSLPolicyNotFound":            true,
	"ALPNPolicyNotFound":           true,
	"AllocationIdNotFound":         true,
}

// errCode returns the API error code of err, or "".
func errCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// wrap turns an SDK error into a providers.Error whose message says what Fairlead was doing;
// the SDK's own message already names the service and operation. Retries already happened in
// the SDK: whatever arrives here is final for this attempt.
func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	var pe *providers.Error
	if errors.As(err, &pe) {
		return err
	}
	what := fmt.Sprintf(format, args...)
	reason := providers.ReasonCloudError
	if missingCodes[errCode(err)] {
		reason = providers.ReasonMisconfigured
	}
	if deniedCodes[errCode(err)] {
		reason = providers.ReasonPermissionDenied
		what += ": permission denied (check the IAM policy of the controller's role)"
	}
	return &providers.Error{Reason: reason, Err: fmt.Errorf("%s: %w", what, err)}
}
