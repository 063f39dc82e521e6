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

// serviceFaultCodes are answers that blame what the Service asked for (a certificate, policy or
// Elastic IP named in its annotations that does not exist): retrying will not help until the
// Service changes.
var serviceFaultCodes = map[string]bool{
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
	if serviceFaultCodes[errCode(err)] {
		reason = providers.ReasonInvalidService
	}
	if deniedCodes[errCode(err)] {
		reason = providers.ReasonPermissionDenied
		what += ": permission denied (check the IAM policy of the controller's role)"
	}
	return &providers.Error{Reason: reason, Err: fmt.Errorf("%s: %w", what, err)}
}
