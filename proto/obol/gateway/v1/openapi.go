package gatewayv1

import _ "embed"

// OpenAPI is the generated OpenAPI (Swagger 2.0) document of the REST API.
//
//go:embed gateway.swagger.json
var OpenAPI []byte
