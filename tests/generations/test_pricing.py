import pytest

from generations.catalog import GEMINI_PRICES
from generations.pricing import Rates, Unpriced, cost_micros, worst_case_usage
from generations.providers.base import Usage

FLASH = Rates(**GEMINI_PRICES["gemini-2.5-flash-image"])
PRO = Rates(**GEMINI_PRICES["gemini-3-pro-image"])


def test_it_prices_the_recorded_flash_image_response_to_the_micro_dollar():
    usage = Usage(input_tokens=17, output_text_tokens=46, output_image_tokens=1290)
    assert cost_micros(FLASH, usage) == 38_820  # $0.038820


def test_it_prices_the_recorded_pro_response_including_thinking_tokens():
    usage = Usage(
        input_tokens=14, output_text_tokens=163, output_image_tokens=1120, thinking_tokens=174
    )
    assert cost_micros(PRO, usage) == 138_472  # $0.138472


def test_it_rounds_once_on_the_total_half_up():
    # 1 input token at $0.30/M = 0.3 micro-USD, twice: rounding each would give 0.
    assert cost_micros(FLASH, Usage(input_tokens=2)) == 1
    assert cost_micros(FLASH, Usage(input_tokens=1)) == 0


def test_it_uses_a_flat_per_image_price_when_one_is_set_for_the_size():
    rates = Rates(per_image={"1K": 39_000, "4K": 240_000})
    assert cost_micros(rates, Usage(), image_size="4K", images=2) == 480_000


def test_it_bills_nothing_on_a_route_marked_free_and_refuses_an_unpriced_one():
    assert cost_micros(None, Usage(output_image_tokens=1290), free=True) == 0
    with pytest.raises(Unpriced):
        cost_micros(None, Usage(output_image_tokens=1290))


def test_it_estimates_a_worst_case_that_covers_the_real_usage():
    est = worst_case_usage(prompt_chars=400, references=2, image_tokens=1290, text_tokens=400)
    assert cost_micros(FLASH, est) >= cost_micros(
        FLASH, Usage(input_tokens=100 + 2 * 258, output_text_tokens=46, output_image_tokens=1290)
    )


def test_input_tokens_are_never_fewer_than_their_image_part():
    from generations.providers.base import Usage

    usage = Usage(input_image_tokens=560, output_image_tokens=1290)  # no input_tokens reported
    assert usage.input_tokens == 560
    assert Usage(input_tokens=600, input_image_tokens=560).input_tokens == 600
