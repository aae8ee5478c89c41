//! What a request will probably use, before it runs: the estimate routing orders
//! candidates by (`cost` strategy) and quotas reserve at admission (#16).

use switchyard_core::{
    Command, ConfigId,
    routing::{RouteRequest, estimated_cost, plan_route},
};

use super::Engine;

/// A request's estimated consumption.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Estimate {
    /// Tokens, input plus output (0 for image kinds).
    pub tokens: i64,
    /// Cost on the dearest instance that may serve it (0 if none is priced or none
    /// can serve it: the request then fails without calling a provider anyway).
    pub cost_usd: f64,
    /// Images asked for (0 for text): the request's `n`, or the largest an instance's
    /// presets would fill in when it gives none.
    pub images: i64,
}

/// Rough token count of a text command: a token per four characters of its messages
/// and system prompt, plus `max_tokens` (256 when not given) for the answer.
pub(super) fn tokens(command: &Command) -> u64 {
    let input = &command.input;
    let chars: usize = input
        .messages
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|m| m.content.len())
        .sum::<usize>()
        + input.system.as_deref().map_or(0, str::len);
    (chars as u64).div_ceil(4)
        + input
            .max_tokens
            .and_then(|m| u64::try_from(m).ok())
            .unwrap_or(256)
}

impl Engine {
    /// What `command` will probably use: its tokens, and its cost on the dearest of the
    /// instances that routing would try now.
    pub fn estimate(&self, command: &Command) -> Estimate {
        let estimated_tokens = tokens(command);
        let request = RouteRequest {
            kind: command.kind,
            route: &command.route,
            size: command.input.size.as_deref(),
            n: command.image_count(),
            estimated_tokens,
            tenant: command.tenant.as_str(),
            // The dearest candidate whichever way the tenant's own accounts are used.
            own_accounts: switchyard_core::routing::OwnAccounts::Prefer,
            carried: command.carried(),
        };
        let table = self.inner.table.load();
        let disabled: Vec<(ConfigId, &str, Option<&str>)> = table
            .disabled
            .iter()
            .map(|(id, name, owner)| (*id, name.as_str(), owner.as_deref()))
            .collect();
        // Every model of a fallback chain (#18 §5) may serve it.
        let planned = plan_route(
            &request,
            &table.instances,
            &disabled,
            self.inner.clock.now_ms(),
            0,
            0,
        );
        let dearest = planned.map_or((0.0, estimated_tokens, command.images_asked()), |plan| {
            // Each candidate as its presets would fill the request in (#18 §3).
            plan.candidates.iter().fold(
                (0.0, estimated_tokens, command.images_asked()),
                |(cost, tokens_most, images), instance| {
                    let defaults = &instance.config.spec.defaults;
                    let Some(filled) = defaults.apply(command) else {
                        return (
                            f64::max(cost, estimated_cost(*instance, &request)),
                            tokens_most,
                            images,
                        );
                    };
                    let filled_tokens = tokens(&filled);
                    let filled_request = RouteRequest {
                        size: filled.input.size.as_deref(),
                        n: filled.image_count(),
                        estimated_tokens: filled_tokens,
                        ..request
                    };
                    (
                        f64::max(cost, estimated_cost(*instance, &filled_request)),
                        tokens_most.max(filled_tokens),
                        images.max(defaults.images_for(command)),
                    )
                },
            )
        });
        let (cost_usd, estimated_tokens, images) = dearest;
        Estimate {
            tokens: if command.kind.is_image() {
                0
            } else {
                i64::try_from(estimated_tokens).unwrap_or(i64::MAX)
            },
            cost_usd,
            images,
        }
    }
}
