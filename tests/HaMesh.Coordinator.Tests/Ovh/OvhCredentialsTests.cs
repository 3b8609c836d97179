using HaMesh.Coordinator.Ovh;

namespace HaMesh.Coordinator.Tests.Ovh;

public sealed class OvhCredentialsTests : IDisposable
{
    private const string Secret = "SecretValue0123456789abcdefABCDEF";
    private readonly string _dir = Directory.CreateTempSubdirectory("hamesh-ovhcred-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(UnixFileMode mode)
    {
        var path = Path.Combine(_dir, "ovh.json");
        File.WriteAllText(path, $$"""{"ApplicationKey":"AppKey123","ApplicationSecret":"{{Secret}}","ConsumerKey":"ConsumerKey456"}""");
        File.SetUnixFileMode(path, mode);
        return path;
    }

    [Theory]
    [InlineData(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead)]
    [InlineData(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead)]
    public void Load_FileReadableByOthers_RefusedWithoutLeakingKeys(UnixFileMode mode)
    {
        var ex = Assert.Throws<InvalidOperationException>(() => OvhCredentials.Load(Write(mode), _ => null));
        Assert.Contains("must be 0600 or stricter", ex.Message);
        Assert.DoesNotContain(Secret, ex.Message);
        Assert.DoesNotContain("ConsumerKey456", ex.Message);
    }

    [Fact]
    public void Load_File0600_ReadAndRedactedInToString()
    {
        var credentials = OvhCredentials.Load(Write(UnixFileMode.UserRead | UnixFileMode.UserWrite), _ => null);
        Assert.Equal(Secret, credentials.ApplicationSecret);
        Assert.Equal("ConsumerKey456", credentials.ConsumerKey);
        Assert.DoesNotContain(Secret, credentials.ToString());
        Assert.DoesNotContain(Secret, $"{credentials}");
    }

    [Fact]
    public void Load_NoFile_FromEnvironment_MissingVariableNamed()
    {
        var env = new Dictionary<string, string> { ["OVH_APPLICATION_KEY"] = "ak", ["OVH_APPLICATION_SECRET"] = Secret };
        var ex = Assert.Throws<InvalidOperationException>(() => OvhCredentials.Load(null, n => env.GetValueOrDefault(n)));
        Assert.Contains("OVH_CONSUMER_KEY is not set", ex.Message);
        Assert.DoesNotContain(Secret, ex.Message);
        env["OVH_CONSUMER_KEY"] = "ck";
        Assert.Equal("ck", OvhCredentials.Load("", n => env.GetValueOrDefault(n)).ConsumerKey);
    }

    [Fact]
    public void Load_FileMissingAField_NamesTheField()
    {
        var path = Path.Combine(_dir, "partial.json");
        File.WriteAllText(path, $$"""{"ApplicationKey":"AppKey123","ApplicationSecret":"{{Secret}}"}""");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var ex = Assert.Throws<InvalidOperationException>(() => OvhCredentials.Load(path, _ => null));
        Assert.Contains("lacks ConsumerKey", ex.Message);
        Assert.DoesNotContain(Secret, ex.Message);
    }
}
