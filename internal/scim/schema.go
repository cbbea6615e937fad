package scim

import (
	"strings"
)

// Schema URNs (RFC 7643 §8.7.1, §4.3).
const (
	UserSchema           = "urn:ietf:params:scim:schemas:core:2.0:User"
	GroupSchema          = "urn:ietf:params:scim:schemas:core:2.0:Group"
	EnterpriseUserSchema = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	ListResponseSchema   = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	PatchOpSchema        = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	SearchRequestSchema  = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
	SPConfigSchema       = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
	ResourceTypeSchema   = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
	SchemaSchema         = "urn:ietf:params:scim:schemas:core:2.0:Schema"
)

// Attribute types (RFC 7643 §2.3).
const (
	TypeString    = "string"
	TypeBoolean   = "boolean"
	TypeDecimal   = "decimal"
	TypeInteger   = "integer"
	TypeDateTime  = "dateTime"
	TypeBinary    = "binary"
	TypeReference = "reference"
	TypeComplex   = "complex"
)

// Mutability, returned and uniqueness values (RFC 7643 §7).
const (
	ReadOnly  = "readOnly"
	ReadWrite = "readWrite"
	Immutable = "immutable"
	WriteOnly = "writeOnly"

	ReturnedAlways  = "always"
	ReturnedNever   = "never"
	ReturnedDefault = "default"
	ReturnedRequest = "request"

	UniqueNone   = "none"
	UniqueServer = "server"
)

// Attribute is one attribute definition (RFC 7643 §7).
type Attribute struct {
	Name            string       `json:"name"`
	Type            string       `json:"type"`
	MultiValued     bool         `json:"multiValued"`
	Description     string       `json:"description,omitempty"`
	Required        bool         `json:"required"`
	CanonicalValues []string     `json:"canonicalValues,omitempty"`
	CaseExact       bool         `json:"caseExact"`
	Mutability      string       `json:"mutability"`
	Returned        string       `json:"returned"`
	Uniqueness      string       `json:"uniqueness"`
	ReferenceTypes  []string     `json:"referenceTypes,omitempty"`
	SubAttributes   []*Attribute `json:"subAttributes,omitempty"`
}

// Sub finds a sub-attribute by name, case-insensitively.
func (a *Attribute) Sub(name string) *Attribute { return find(a.SubAttributes, name) }

// Schema is one schema definition (RFC 7643 §7).
type Schema struct {
	ID          string       `json:"id"`
	Name        string       `json:"name"`
	Description string       `json:"description"`
	Attributes  []*Attribute `json:"attributes"`
}

// Attr finds a top-level attribute by name, case-insensitively.
func (s *Schema) Attr(name string) *Attribute { return find(s.Attributes, name) }

func find(list []*Attribute, name string) *Attribute {
	for _, a := range list {
		if strings.EqualFold(a.Name, name) {
			return a
		}
	}
	return nil
}

// attribute builders, defaults as RFC 7643 §2.2 gives them.
func str(name, desc string) *Attribute {
	return &Attribute{Name: name, Type: TypeString, Description: desc, Mutability: ReadWrite, Returned: ReturnedDefault, Uniqueness: UniqueNone}
}

func with(a *Attribute, f func(*Attribute)) *Attribute { f(a); return a }

func boolean(name, desc string) *Attribute {
	return with(str(name, desc), func(a *Attribute) { a.Type = TypeBoolean })
}

func ref(name, desc string, types ...string) *Attribute {
	return with(str(name, desc), func(a *Attribute) { a.Type = TypeReference; a.ReferenceTypes = types })
}

func complexAttr(name, desc string, multi bool, subs ...*Attribute) *Attribute {
	return with(str(name, desc), func(a *Attribute) { a.Type = TypeComplex; a.MultiValued = multi; a.SubAttributes = subs })
}

// multiValued is the usual value/display/type/primary set of a
// multi-valued attribute (RFC 7643 §2.4), with the type's canonical values.
func multiValued(name, desc string, valueType string, types ...string) *Attribute {
	value := str("value", "The value of the "+name+" entry.")
	value.Type = valueType
	return complexAttr(name, desc, true,
		value,
		str("display", "A human-readable name, primarily used for display purposes."),
		with(str("type", "A label indicating the attribute's function."), func(a *Attribute) { a.CanonicalValues = types }),
		boolean("primary", "Whether this value is the preferred one; at most one value is primary."),
	)
}

func readOnly(a *Attribute) *Attribute { a.Mutability = ReadOnly; return a }

// User is the core User schema (RFC 7643 §4.1, §8.7.1) as served.
var User = &Schema{
	ID: UserSchema, Name: "User", Description: "User Account",
	Attributes: []*Attribute{
		with(str("userName", "Unique identifier for the User, typically used by the user to directly authenticate to the service provider. Unique within its zone, compared without regard to case."),
			func(a *Attribute) { a.Required = true; a.Uniqueness = UniqueServer }),
		complexAttr("name", "The components of the user's real name.", false,
			str("formatted", "The full name, formatted for display."),
			str("familyName", "The family name of the User."),
			str("givenName", "The given name of the User."),
			str("middleName", "The middle name(s) of the User."),
			str("honorificPrefix", "The honorific prefix(es) of the User."),
			str("honorificSuffix", "The honorific suffix(es) of the User."),
		),
		str("displayName", "The name of the User, suitable for display to end-users."),
		str("nickName", "The casual way to address the user in real life."),
		ref("profileUrl", "A fully qualified URL pointing to a page representing the User's online profile.", "external"),
		str("title", "The user's title, such as \"Vice President\"."),
		str("userType", "Used to identify the relationship between the organization and the user."),
		str("preferredLanguage", "The User's preferred written or spoken language (RFC 7231 Accept-Language)."),
		str("locale", "The User's default location, for localizing items such as currency and dates."),
		str("timezone", "The User's time zone in the IANA Time Zone database format."),
		boolean("active", "The User's administrative status; an inactive User cannot sign in."),
		with(str("password", "The User's cleartext password, to set it; never returned."),
			func(a *Attribute) { a.Mutability = WriteOnly; a.Returned = ReturnedNever }),
		multiValued("emails", "Email addresses for the user.", TypeString, "work", "home", "other"),
		multiValued("phoneNumbers", "Phone numbers for the User.", TypeString, "work", "home", "mobile", "fax", "pager", "other"),
		multiValued("ims", "Instant messaging addresses for the User.", TypeString, "aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"),
		multiValued("photos", "URLs of photos of the User.", TypeReference, "photo", "thumbnail"),
		complexAttr("addresses", "A physical mailing address for this User.", true,
			str("formatted", "The full mailing address, formatted for display."),
			str("streetAddress", "The full street address component."),
			str("locality", "The city or locality component."),
			str("region", "The state or region component."),
			str("postalCode", "The zip code or postal code component."),
			str("country", "The country name component (ISO 3166-1 alpha-2)."),
			with(str("type", "A label indicating the attribute's function."), func(a *Attribute) { a.CanonicalValues = []string{"work", "home", "other"} }),
			boolean("primary", "Whether this address is the preferred one."),
		),
		readOnly(complexAttr("groups", "The groups the user belongs to, directly or indirectly; managed through the Group resource.", true,
			readOnly(str("value", "The identifier of the User's group.")),
			readOnly(ref("$ref", "The URI of the corresponding Group resource.", "Group")),
			readOnly(str("display", "A human-readable name, primarily used for display purposes.")),
			readOnly(with(str("type", "How the group membership was derived."), func(a *Attribute) { a.CanonicalValues = []string{"direct", "indirect"} })),
		)),
		multiValued("entitlements", "A list of entitlements for the User.", TypeString),
		multiValued("roles", "A list of roles for the User.", TypeString),
		multiValued("x509Certificates", "A list of certificates issued to the User.", TypeBinary),
	},
}

// EnterpriseUser is the enterprise User extension (RFC 7643 §4.3).
var EnterpriseUser = &Schema{
	ID: EnterpriseUserSchema, Name: "EnterpriseUser", Description: "Enterprise User",
	Attributes: []*Attribute{
		str("employeeNumber", "Numeric or alphanumeric identifier assigned to a person by the organization."),
		str("costCenter", "Identifies the name of a cost center."),
		str("organization", "Identifies the name of an organization."),
		str("division", "Identifies the name of a division."),
		str("department", "Identifies the name of a department."),
		complexAttr("manager", "The User's manager.", false,
			str("value", "The id of the SCIM resource representing the User's manager."),
			ref("$ref", "The URI of the SCIM resource representing the User's manager.", "User"),
			readOnly(str("displayName", "The displayName of the User's manager.")),
		),
	},
}

// Group is the core Group schema (RFC 7643 §4.2, §8.7.1).
var Group = &Schema{
	ID: GroupSchema, Name: "Group", Description: "Group",
	Attributes: []*Attribute{
		with(str("displayName", "A human-readable name for the Group."), func(a *Attribute) { a.Required = true }),
		complexAttr("members", "A list of members of the Group.", true,
			with(str("value", "Identifier of the member of this Group."), func(a *Attribute) { a.Mutability = Immutable }),
			with(ref("$ref", "The URI of the member resource.", "User", "Group"), func(a *Attribute) { a.Mutability = Immutable }),
			readOnly(str("display", "A human-readable name for the member.")),
			with(str("type", "The type of the member."), func(a *Attribute) { a.Mutability = Immutable; a.CanonicalValues = []string{"User", "Group"} }),
		),
	},
}

// Common attributes of every resource (RFC 7643 §3.1): id and meta are
// the server's, externalId the client's.
var (
	idAttr = with(readOnly(str("id", "A unique identifier for the resource, assigned by the service provider.")),
		func(a *Attribute) { a.CaseExact = true; a.Returned = ReturnedAlways; a.Uniqueness = UniqueServer })
	externalIDAttr = with(str("externalId", "An identifier for the resource as defined by the provisioning client."),
		func(a *Attribute) { a.CaseExact = true })
	metaAttr = readOnly(complexAttr("meta", "Resource metadata.", false,
		readOnly(with(str("resourceType", "The name of the resource type."), func(a *Attribute) { a.CaseExact = true })),
		readOnly(with(str("created", "When the resource was added."), func(a *Attribute) { a.Type = TypeDateTime })),
		readOnly(with(str("lastModified", "When the resource was last changed."), func(a *Attribute) { a.Type = TypeDateTime })),
		readOnly(with(ref("location", "The URI of the resource.", "uri"), func(a *Attribute) { a.CaseExact = true })),
		readOnly(with(str("version", "The version (ETag) of the resource."), func(a *Attribute) { a.CaseExact = true })),
	))
)

// ResourceType is a served resource type: its core schema and extensions.
type ResourceType struct {
	Name       string
	Endpoint   string // "/Users"
	Schema     *Schema
	Extensions []*Schema
}

// Users and Groups are the resource types served.
var (
	Users  = &ResourceType{Name: "User", Endpoint: "/Users", Schema: User, Extensions: []*Schema{EnterpriseUser}}
	Groups = &ResourceType{Name: "Group", Endpoint: "/Groups", Schema: Group}
)

// Schemas are every schema served, for /Schemas.
var Schemas = []*Schema{User, EnterpriseUser, Group}

// Resolve finds the attribute a path names in the resource type: a common
// attribute (id, externalId, meta), one of the core schema, or one of an
// extension (with its URN). It returns the schema URN the attribute
// belongs to ("" for common attributes), the attribute and its
// sub-attribute (nil when the path has none). Names are case-insensitive.
func (rt *ResourceType) Resolve(p AttrPath) (urn string, attr, sub *Attribute, err *Error) {
	var s *Schema
	switch {
	case p.URN == "":
		switch {
		case strings.EqualFold(p.Attr, "id"):
			attr = idAttr
		case strings.EqualFold(p.Attr, "externalId"):
			attr = externalIDAttr
		case strings.EqualFold(p.Attr, "meta"):
			attr = metaAttr
		case strings.EqualFold(p.Attr, "schemas"):
			attr = schemasAttr
		default:
			s = rt.Schema
		}
	case strings.EqualFold(p.URN, rt.Schema.ID):
		s = rt.Schema
	default:
		for _, ext := range rt.Extensions {
			if strings.EqualFold(p.URN, ext.ID) {
				s = ext
			}
		}
		if s == nil {
			return "", nil, nil, Errorf(400, InvalidPath, "%q is not a schema of the %s resource", p.URN, rt.Name)
		}
	}
	if s != nil {
		urn = s.ID
		if attr = s.Attr(p.Attr); attr == nil {
			return "", nil, nil, Errorf(400, InvalidPath, "%q is not an attribute of the %s resource", p.String(), rt.Name)
		}
	}
	if p.Sub != "" {
		if sub = attr.Sub(p.Sub); sub == nil {
			return "", nil, nil, Errorf(400, InvalidPath, "%q is not an attribute of the %s resource", p.String(), rt.Name)
		}
	}
	return urn, attr, sub, nil
}

var schemasAttr = with(readOnly(str("schemas", "The schemas of the resource.")), func(a *Attribute) {
	a.MultiValued, a.Type, a.CaseExact, a.Returned = true, TypeReference, true, ReturnedAlways
})
