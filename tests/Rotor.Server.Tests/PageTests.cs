using PuppeteerSharp;
using Rotor.Lm;
using Rotor.Lm.Tokenizers;
using Rotor.Rag.Answers;
using Rotor.Server.Grounding;

namespace Rotor.Server.Tests;

/// <summary>A fact that needs Debian's chromium (/usr/bin/chromium) and stories260K; skips, saying which is absent.</summary>
public sealed class ChromiumFactAttribute : FactAttribute
{
    /// <summary>The browser the page test drives (never downloaded).</summary>
    public const string Chromium = "/usr/bin/chromium";

    /// <summary>Skips unless chromium and the model files exist.</summary>
    public ChromiumFactAttribute()
    {
        if (!File.Exists(Chromium)) { Skip = $"{Chromium} not found: apt-get install chromium"; return; }
        foreach (string f in new[] { TestPaths.Stories, TestPaths.Tok512 })
            if (TestPaths.SharedLm(f) is null) { Skip = $"{f} not found under {TestPaths.SharedData ?? "../shared/data"}/lm"; return; }
    }
}

/// <summary>The web page in headless Chromium: a question typed into the chat box streams its answer, the sources of
/// the grounded answer are listed, a citation and a source show the passage, the search box lists passages. A
/// screenshot is kept under the test output's artifacts folder.</summary>
[Collection("rag")]
public sealed class PageTests(RagFixture f)
{
    [ChromiumFact]
    public async Task ChatStreamsAGroundedAnswerWithItsSourcesAndSearchWorks()
    {
        var s = f.Served!;
        await using var browser = await Puppeteer.LaunchAsync(new LaunchOptions
        {
            Headless = true,
            ExecutablePath = ChromiumFactAttribute.Chromium,
            // Root in CI: Chromium's sandbox needs a user namespace it may not get; /dev/shm may be small in containers.
            Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        });
        await using var page = await browser.NewPageAsync();
        await page.SetViewportAsync(new ViewPortOptions { Width = 1280, Height = 800 });
        await page.EvaluateFunctionOnNewDocumentAsync("() => localStorage.setItem('rotor-key', 'k')");
        await page.GoToAsync(s.Address.ToString());
        await page.WaitForFunctionAsync("() => document.getElementById('model').textContent.includes('with sources')");
        Assert.True(await page.EvaluateExpressionAsync<bool>("document.getElementById('grounded').checked"));

        const string question = "Who was the first person to walk on the Moon?";
        await page.TypeAsync("#question", question);
        await page.ClickAsync("#send");
        await page.WaitForSelectorAsync(".msg.assistant[data-done='true']", new WaitForSelectorOptions { Timeout = 120_000 });
        string answer = await page.EvaluateExpressionAsync<string>("document.querySelector('.msg.assistant').textContent");
        // The page renders each streamed delta as it is parsed (counted by the page itself: how many screen updates the
        // browser shows depends on how the network and the event loop batch them, so it is not asserted).
        int deltas = int.Parse(await page.EvaluateExpressionAsync<string>("document.querySelector('.msg.assistant').dataset.deltas || '0'"));
        Assert.Equal(0, await page.EvaluateExpressionAsync<int>("document.querySelectorAll('.msg.error').length"));
        Assert.Equal(question, await page.EvaluateExpressionAsync<string>("document.querySelector('.msg.user').textContent"));

        // The page's answer is the model's greedy answer on the grounded prompt (the server samples greedily here).
        using var answerer = new GroundedAnswerer(f.Model!, f.Retriever!, new GroundedAnswerOptions { ContextLength = RagFixture.Context });
        var g = new AnswererGrounding(answerer);
        var grounded = await g.GroundAsync([("user", question)], new GroundingRequest(5, Rotor.Rag.Search.RetrievalMode.Hybrid, 64), RagFixture.Context, default);
        var direct = Models.Direct(f.Model!, grounded.PromptIds, new GenerationOptions { MaxTokens = 64, Sampling = SamplingOptions.Greedy }, RagFixture.Context);
        Assert.Equal(direct.Text, answer);
        Assert.True(deltas > 5, $"the page rendered {deltas} streamed deltas");

        // The sources panel lists the grounded answer's passages.
        var titles = await page.EvaluateExpressionAsync<string[]>("[...document.querySelectorAll('#sources li')].map(li => li.textContent)");
        Assert.Equal(grounded.Sources.Count, titles.Length);
        for (int i = 0; i < titles.Length; i++) Assert.StartsWith(grounded.Sources[i].Title, titles[i]);

        // A citation in an answer shows its passage (the tiny model does not write [n] itself, so an answer that
        // cites is rendered by the page's own function).
        await page.EvaluateExpressionAsync("(() => { const d = document.createElement('div'); d.className = 'msg assistant'; document.getElementById('log').appendChild(d); renderAnswer(d, 'It was Armstrong [1], not [99].'); })()");
        Assert.Equal(1, await page.EvaluateExpressionAsync<int>("document.querySelectorAll('.cite').length"));
        await page.ClickAsync(".cite");
        Assert.False(await page.EvaluateExpressionAsync<bool>("document.getElementById('passage').hidden"));
        Assert.Equal(grounded.Sources[0].Text, await page.EvaluateExpressionAsync<string>("document.getElementById('passage-text').textContent"));
        // Clicking a source shows it too.
        await page.ClickAsync($"#sources li[data-n='{grounded.Sources.Count}']");
        Assert.Equal(grounded.Sources[^1].Text, await page.EvaluateExpressionAsync<string>("document.getElementById('passage-text').textContent"));
        await page.ScreenshotAsync(Path.Combine(TestPaths.Artifacts(), "page-chat.png"));

        // The search box lists what /v1/search finds.
        await page.TypeAsync("#query", "photosynthesis in plants");
        await page.ClickAsync("#search button");
        var expected = f.Retriever!.Search("photosynthesis in plants", new Rotor.Rag.Search.RetrievalOptions { Top = 5 }).Hits;
        await page.WaitForFunctionAsync($"() => document.querySelectorAll('#sources li').length === {expected.Count} && document.querySelector('#sources li').textContent.startsWith({System.Text.Json.JsonSerializer.Serialize(expected[0].Passage.Title)})");
        await page.ClickAsync("#sources li[data-n='1']");
        Assert.Equal(expected[0].Passage.Text, await page.EvaluateExpressionAsync<string>("document.getElementById('passage-text').textContent"));
        await page.ScreenshotAsync(Path.Combine(TestPaths.Artifacts(), "page-search.png"));
    }
}
