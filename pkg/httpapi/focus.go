package httpapi

import (
	"errors"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/shopspring/decimal"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// focusGrain is the grouping of a FOCUS export: one charge per day,
// connection (billing account), model (SKU) and project or workspace (sub
// account), the finest grain at which the providers' cost reports give
// money. The provider follows from the connection; it is grouped so the row
// knows it.
var focusGrain = []string{"day", "provider", "connection", "model", "project"}

// focusHeader is the FOCUS 1.2 columns the export writes: every column the
// specification marks Mandatory, the Conditional ones these providers'
// charges have (consumed quantity, SKU, sub account), ChargeFrequency, and
// x_Provisional, a custom column (FOCUS names those x_…) saying that a
// recent day may still be restated by the provider.
var focusHeader = []string{
	"BilledCost", "EffectiveCost", "ListCost", "ContractedCost", "BillingCurrency",
	"BillingAccountId", "BillingAccountName",
	"BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd",
	"ChargeCategory", "ChargeClass", "ChargeDescription", "ChargeFrequency",
	"ProviderName", "PublisherName", "InvoiceIssuerName", "ServiceName", "ServiceCategory",
	"SkuId", "ConsumedQuantity", "ConsumedUnit", "PricingQuantity", "PricingUnit",
	"SubAccountId", "SubAccountName", "SubAccountType", "x_Provisional",
}

// focusPricingUnit is how both providers price tokens: per million
// (UnitFormat "<quantity> <plural unit>"). PricingQuantity is therefore the
// token count divided by a million.
const focusPricingUnit = "1000000 Tokens"

// focusVendor is what FOCUS calls the provider in its text columns.
type focusVendor struct {
	name, service, subAccountType string
}

// focusVendors is each provider's FOCUS names; the sub account is an
// OpenAI project or an Anthropic workspace.
var focusVendors = map[tokka.Provider]focusVendor{
	tokka.OpenAI:    {name: "OpenAI", service: "OpenAI API", subAccountType: "Project"},
	tokka.Anthropic: {name: "Anthropic", service: "Claude API", subAccountType: "Workspace"},
}

// usageFocusExport streams the usage as a FOCUS 1.2 cost and usage dataset
// (CSV), one Usage charge per focusGrain group, under the same range limits,
// per-user export slots and formula guard as the CSV export. The provider
// invoices the organisation pay-as-you-go at its list prices, and Tokka
// knows of no negotiated rate or commitment, so BilledCost, EffectiveCost,
// ListCost and ContractedCost are the same amount: the cost report's.
func (s *Server) usageFocusExport(c echo.Context) error {
	q, err := s.usageQuery(c)
	if err != nil {
		return err
	}
	q.GroupBy = focusGrain
	u := userOf(c)
	// Billing accounts are connections; their labels are read once each,
	// between chunks, like everything else an export reads.
	labels := map[string]string{}
	label := func(id string) string {
		l, ok := labels[id]
		if !ok {
			conn, err := s.connections.GetConnection(c.Request().Context(), u, id)
			var te *tokka.Error
			if err == nil {
				l = conn.Label
			} else if !errors.As(err, &te) || te.Code != tokka.CodeNotFound {
				// A missing label is an empty name, not a failed export.
				s.failures.Warn("focus export label").Str("request_id", requestID(c)).Err(err).
					Msg("focus export could not read a connection's label")
			}
			labels[id] = l
		}
		return l
	}
	return s.streamCSV(c, "tokka-usage-focus.csv", focusHeader, q, func(r tokka.UsageGroup) []string {
		return focusRecord(r, label(r.Group["connection_id"]))
	})
}

// focusRecord is one FOCUS row for a usage group of focusGrain; account is
// its connection's label. An empty cell is a null.
func focusRecord(r tokka.UsageGroup, account string) []string {
	prov := tokka.Provider(r.Group["provider"])
	v := focusVendors[prov]
	day, _ := time.Parse(time.DateOnly, r.Group["day"])
	month := time.Date(day.Year(), day.Month(), 1, 0, 0, 0, 0, time.UTC)
	tokens := r.InputTokens() + r.OutputTokens
	model := r.Group["model"]
	sub := r.Group["project_id"]
	subName := r.ProjectName
	if subName == nil {
		subName = r.WorkspaceName
	}
	subType := ""
	if sub != "" {
		subType = v.subAccountType
	}
	what := model + " tokens"
	if model == "" {
		what = "usage not attributed to a model"
	}
	cost := r.CostUSD.String()
	return []string{
		cost, cost, cost, cost, "USD",
		r.Group["connection_id"], csvSafe(account),
		rfc3339(month), rfc3339(month.AddDate(0, 1, 0)), rfc3339(day), rfc3339(day.AddDate(0, 0, 1)),
		"Usage", "", csvSafe(v.name + " API " + what), "Usage-Based",
		v.name, v.name, v.name, v.service, "AI and Machine Learning",
		csvSafe(model), strconv.FormatInt(tokens, 10), "Tokens", decimal.New(tokens, -6).String(), focusPricingUnit,
		csvSafe(sub), csvSafe(deref(subName)), subType, strconv.FormatBool(r.Provisional),
	}
}

// rfc3339 is t as FOCUS writes a date-time: RFC 3339 in UTC, to the second.
func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }
