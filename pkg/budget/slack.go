package budget

import (
	"encoding/json"
	"fmt"

	"github.com/tokka-dev/tokka/pkg/notify"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// slackPayload is a budget alert as a Slack message: the headline (what
// fired), the figures as fields, a link to the budget when appURL is set,
// and the reminder that Tokka cannot stop spend. Everything a user typed
// (the budget's name, inside the title too) is escaped for mrkdwn; nothing
// carries a secret or a destination.
func slackPayload(d tokka.PendingDelivery, appURL string) notify.SlackPayload {
	var det budgetDetail
	_ = json.Unmarshal(d.AlertDetail, &det)
	title := notify.SlackEscape(d.AlertTitle)
	icon := ":warning:"
	if d.AlertSeverity == "critical" {
		icon = ":rotating_light:"
	}
	threshold := fmt.Sprintf("%d%% (spend)", det.ThresholdPercent)
	if d.AlertKind == tokka.AlertBudgetForecast {
		threshold = fmt.Sprintf("%d%% (forecast)", det.ThresholdPercent)
	}
	field := func(name, value string) notify.SlackText { return notify.SlackMrkdwn("*" + name + "*\n" + value) }
	blocks := []notify.SlackBlock{
		notify.SlackSection(notify.SlackMrkdwn(icon + " *" + title + "*")),
		notify.SlackFields(
			field("Budget", notify.SlackEscape(d.BudgetName)),
			field("Period", det.Month+" (UTC month)"),
			field("Spent so far", fmt.Sprintf("$%s (%s%% of the budget)", det.SpendUSD.StringFixed(2), det.PercentUsed.String())),
			field("Budget amount", "$"+det.AmountUSD.StringFixed(2)),
			field("Month-end forecast", "$"+det.ForecastUSD.StringFixed(2)),
			field("Threshold", threshold),
		),
	}
	if appURL != "" {
		// appURL is checked when the syncer starts (no <, >, | or space)
		// and the id is a UUID, so the link cannot break out of <…|…>.
		blocks = append(blocks, notify.SlackSection(notify.SlackMrkdwn(
			"<"+appURL+"/budgets/"+d.BudgetID+"|Open this budget in Tokka>")))
	}
	blocks = append(blocks, notify.SlackContext(notify.SlackMrkdwn(
		"Tokka reads your providers' billing data; it cannot stop spend. To act, limit or revoke "+
			"the API keys that are spending in your provider's console.")))
	return notify.SlackPayload{Text: title, Blocks: blocks}
}
